"""The DistInit demo under the evidence protocol: every data seed draws its own sets, every
training seed pre-trains its own DistInit students, and the reports' verdicts are the paired
rule of docs/protocol.md (fake evaluation folders, no training)."""
import json
import os
import subprocess
import sys

import pytest
from eval_fixtures import write_eval as _write_eval

from d3d_tf.demo import distinit as demo_distinit
from d3d_tf.demo import distinit_report as demo_distinit_report
from d3d_tf.demo import protocol as demo_protocol

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "demo", "distinit")
RUNS = ("scratch_r3d_18", "inflated_r3d_18", "distinit_r3d_18", "scratch_r2plus1d_18",
        "distinit_r2plus1d_18")


def _flag(command, name):
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def test_every_training_seed_pretrains_its_own_distinit_students_from_one_teacher():
    c = demo_distinit.DemoConfig(out_dir="out", configs=CONFIGS, seeds=3)
    pre = {s.name: s.command for s in demo_distinit.pretraining_stages(c)}
    # One image teacher and one inflation per data seed; DistInit once per training seed,
    # seed 0 in the unsuffixed folders so earlier runs are reused.
    assert [n for n in pre if n.startswith(("train_", "inflate", "distinit"))] == [
        "train_image_teacher", "distinit_r3d_18", "distinit_r2plus1d_18",
        "distinit_r3d_18_seed1", "distinit_r2plus1d_18_seed1", "distinit_r3d_18_seed2",
        "distinit_r2plus1d_18_seed2", "inflate_r3d_18"]
    for seed, suffix in ((0, ""), (1, "_seed1"), (2, "_seed2")):
        for network in ("r3d_18", "r2plus1d_18"):
            run = pre[f"distinit_{network}{suffix}"]
            assert _flag(run, "seed") == str(seed)
            assert _flag(run, "model_dir") == f"out/runs/distinit_{network}{suffix}"
            assert _flag(run, "distinit_teachers") == "out/runs/image_teacher/model"
            # The flagfile's own --seed comes first, so the command line's wins.
            assert run.index(f"--seed={seed}") > run.index(
                f"--flagfile={os.path.join(CONFIGS, 'distinit.flags')}")
    for seed, suffix in ((0, ""), (1, "_seed1")):
        finetune = {s.name: s.command for s in demo_distinit.seed_stages(c, seed)}
        assert _flag(finetune[f"finetune_distinit_r3d_18{suffix}"], "init_from") == \
            f"out/runs/distinit_r3d_18{suffix}/model"
        assert _flag(finetune[f"finetune_distinit_r2plus1d_18{suffix}"], "init_from") == \
            f"out/runs/distinit_r2plus1d_18{suffix}/model"
        assert _flag(finetune[f"finetune_inflated_r3d_18{suffix}"], "init_from") == \
            "out/runs/inflated_r3d_18/model"
        # A cell is paired: every start of this seed is fine-tuned with the same seed.
        assert {_flag(cmd, "seed") for n, cmd in finetune.items()
                if n.startswith("finetune_")} == {str(seed)}
    # The pictures stay those of seed 0's initializations.
    reps = {s.name: s.command for s in demo_distinit.representation_stages(c)}
    assert _flag(reps["representation_distinit_r3d_18"], "model_dir") == \
        "out/runs/distinit_r3d_18/model"


def test_a_data_seed_draws_each_set_with_its_own_generator_seed():
    assert demo_distinit_report.generator_seeds(7) == {"pool": 70, "labeled": 71, "images": 72}
    drawn = [s for d in (0, 1, 7, 101, 2 ** 31 - 1)
             for s in demo_distinit_report.generator_seeds(d).values()]
    assert len(set(drawn)) == len(drawn)  # no set shared within or between data seeds
    c = demo_distinit.DemoConfig(out_dir="out/data_7", configs=CONFIGS, data_seed=7)
    synthetic = {s.name: s.command for s in demo_distinit.pretraining_stages(c)
                 if s.name.startswith("synthetic_")}
    assert {n: _flag(cmd, "seed") for n, cmd in synthetic.items()} == {
        "synthetic_pool": "70", "synthetic_labeled": "71", "synthetic_images": "72"}
    assert _flag(synthetic["synthetic_pool"], "out_dir") == "out/data_7/videos/pool"
    # Without a data seed the flagfiles' own seeds stay (the built-in draw).
    plain = demo_distinit.pretraining_stages(demo_distinit.DemoConfig(out_dir="o",
                                                                      configs=CONFIGS))
    assert not [a for s in plain[:3] for a in s.command if a.startswith("--seed=")]


def test_data_seeds_given_drawn_fresh_kept_for_a_rerun_and_refused_when_wrong(tmp_path):
    out = str(tmp_path / "out")
    assert demo_protocol.resolve_data_seeds(out, ("7", "9"), 0) == [7, 9]
    assert demo_protocol.resolve_data_seeds(out, [3], 0) == [3]
    assert demo_protocol.resolve_data_seeds(out, (), 0) == []
    drawn = demo_protocol.resolve_data_seeds(out, (), 3)
    assert len(set(drawn)) == 3 and not set(drawn) & set(demo_protocol.DEVELOPMENT_DATA_SEEDS)
    with open(os.path.join(out, "data_seeds.json")) as f:
        assert json.load(f) == {"data_seeds": drawn}
    assert demo_protocol.resolve_data_seeds(out, (), 3) == drawn  # a rerun resumes the draw
    for seeds, fresh, message in (((), 2, "holds 3 data seeds drawn earlier, not --fresh"),
                                  (("1",), 2, "not both"),
                                  (("x",), 0, "--data_seeds takes integers, got \\['x'\\]"),
                                  (("4", "4"), 0, "distinct integers >= 0"),
                                  (("-1",), 0, "distinct integers >= 0")):
        with pytest.raises(ValueError, match=message):
            demo_protocol.resolve_data_seeds(out, seeds, fresh)


def test_each_data_seed_runs_the_whole_demo_in_its_folder(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(demo_distinit, "run_stage",
                        lambda out, stage: ran.append((out, stage.name, stage.command)))
    monkeypatch.setattr(demo_distinit, "write_shape_manifest", lambda *a: "manifest.csv")
    out = str(tmp_path / "out")
    draws = demo_protocol.DataSeedsConfig(data_seeds=("7", "9"))
    path = demo_distinit.run(demo_distinit.DemoConfig(out_dir=out, configs=CONFIGS, seeds=2,
                                                      draws=draws))
    assert path == os.path.join(out, "protocol.md")
    for d in (7, 9):
        folder = os.path.join(out, f"data_{d}")
        stages = {name: cmd for o, name, cmd in ran if o == folder}
        assert len(stages) == len([r for r in ran if r[0] == folder])  # no stage twice
        assert _flag(stages["synthetic_labeled"], "seed") == str(10 * d + 1)
        assert _flag(stages["distinit_r3d_18_seed1"], "model_dir") == \
            os.path.join(folder, "runs", "distinit_r3d_18_seed1")
        assert _flag(stages["evaluate_seed1"], "out_dir") == os.path.join(folder, "eval_seed1")
        assert os.path.isfile(os.path.join(folder, "report.md"))
    assert {o for o, _, _ in ran} == {os.path.join(out, "data_7"), os.path.join(out, "data_9")}
    with open(path) as f:
        report = f.read()
    assert "Data seeds: 7, 9 (development seeds, never used here: 0, 101, 102); training seeds " \
           "per data seed: 2." in report
    assert "- missing per-video predictions: rerun the demo." in report


@pytest.mark.parametrize("tool", ["d3d_tf.demo.distinit", "d3d_tf.demo"])
def test_both_demos_refuse_both_data_seed_flags_in_one_line(tmp_path, tool):
    result = subprocess.run(
        [sys.executable, "-m", tool, f"--out_dir={tmp_path}", "--data_seeds=5",
         "--fresh_data_seeds=2"],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"{tool}: error: give --data_seeds or --fresh_data_seeds, "
                                    "not both"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not os.path.exists(tmp_path / "data_seeds.json")


def _data_seed_folder(out, r2plus1d_gap, count=40, seeds=2):
    """One data seed's evaluations over `seeds` training seeds: Res3D-18 scratch 30 %,
    inflated 50 %, DistInit 70 %; R(2+1)D-18 scratch 30 %, DistInit 30 % + `r2plus1d_gap`;
    an image teacher at 90 % per video and 8 labeled classes."""
    for seed in range(seeds):
        _write_eval(out, demo_distinit_report.run_suffix(seed), dict(zip(
            RUNS, (0.3, 0.5, 0.7, 0.3, 0.3 + r2plus1d_gap))), count=count)
    teacher = os.path.join(out, "runs", "image_teacher")
    os.makedirs(teacher)
    with open(os.path.join(teacher, "train_summary.json"), "w") as f:
        json.dump({"clip_top1": 0.85, "video_top1": 0.9}, f)
    labels = os.path.join(out, "records", "labeled")
    os.makedirs(labels)
    with open(os.path.join(labels, "labels.txt"), "w") as f:
        f.write("".join(f"c{i}\n" for i in range(8)))


def test_protocol_report_judges_table_1s_order_over_data_seeds(tmp_path):
    dirs = {}
    for d, gap in ((3001, 0.1), (3002, 0.15), (3003, -0.05)):  # R(2+1)D-18 behind in 3003
        dirs[d] = str(tmp_path / f"data_{d}")
        _data_seed_folder(dirs[d], gap)
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        report = f.read()
    assert "Data seeds: 3001, 3002, 3003 (development seeds, never used here: 0, 101, 102)" \
        in report
    assert "| 3003 | 90.0 | 30.0 | 50.0 | 70.0 | 30.0 | 25.0 |" in report
    assert "- Chance on the labeled set: 12.5 %." in report
    assert "Test videos per data seed: 40, fewer than the protocol's 400: one video is 2.5 " \
           "points" in report
    sections = report.split("\n## ")
    titles = [s.splitlines()[0] for s in sections[1:]]
    assert titles == ["Per data seed (video top-1 %, mean over training seeds)",
                      "DistInit against inflated (Res3D-18)",
                      "Inflated against scratch (Res3D-18)",
                      "DistInit against scratch (Res3D-18)",
                      "DistInit against scratch (R(2+1)D-18)", "Table 1's order"]
    over_inflation, inflation, over_scratch, r2plus1d = sections[2:6]
    assert "| 3001 | 50.0 | 70.0 | +20.0 |" in over_inflation
    assert "| pooled | 50.0 | 70.0 | **+20.0** |" in over_inflation
    assert "**DistInit Res3D-18 is better than Inflated Res3D-18**: the pooled interval " \
           "excludes 0 and the sign holds in all 3 data seeds. (6 cells; test videos per " \
           "data seed: 40, 40, 40.)" in over_inflation
    assert "**Inflated Res3D-18 is better than Scratch Res3D-18**" in inflation
    assert "| pooled | 30.0 | 70.0 | **+40.0** |" in over_scratch
    assert "| 3003 | 30.0 | 25.0 | -5.0 |" in r2plus1d
    assert "**No claim** for DistInit R(2+1)D-18 against Scratch R(2+1)D-18" in r2plus1d
    assert "higher in 2 and lower in 1 of 3 data seeds" in r2plus1d
    assert "- Res3D-18, DistInit > inflation > scratch: **holds**" in report
    assert "- R(2+1)D-18, DistInit > scratch: **not shown**." in report
    # Inflation behind scratch in every data seed: the order is not shown, and why.
    for folder in dirs.values():
        for seed in range(2):
            _write_eval(folder, demo_distinit_report.run_suffix(seed),
                        dict(zip(RUNS, (0.5, 0.3, 0.7, 0.3, 0.45))), count=40)
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        report = f.read()
    assert "**Inflated Res3D-18 is worse than Scratch Res3D-18**" in report
    assert "- Res3D-18, DistInit > inflation > scratch: **not shown**" in report
    assert "- R(2+1)D-18, DistInit > scratch: **holds**." in report


def test_the_single_data_seed_report_states_the_paired_verdicts(tmp_path):
    # Three test videos of 32 ahead in both seeds: enough for the older "more than two test
    # videos" rule, not for the paired interval (a resample misses all three 4 % of the time).
    out = str(tmp_path)
    for seed in range(2):
        _write_eval(out, demo_distinit_report.run_suffix(seed), dict(zip(
            RUNS, (8 / 32, 16 / 32, 19 / 32, 8 / 32, 20 / 32))), count=32)
    os.makedirs(os.path.join(out, "stages"))
    with open(os.path.join(out, "stages", "train_image_teacher.done"), "w") as f:
        json.dump({"command": "...", "seconds": 41.4}, f)
    with open(demo_distinit_report.write_report(out, seeds=2, data_seed=7)) as f:
        report = f.read()
    assert "| train_image_teacher | 41 |\n| total | 41 |" in report
    assert "DistInit Res3D-18 (59.4%) and Inflated Res3D-18 (50.0%) show **no reliable " \
           "difference** (2 of 2 seeds) by the protocol's rule: paired 95 % interval of the " \
           "gap [+0.0, +21.9] points." in report
    assert "DistInit Res3D-18 (59.4%) **beats** Scratch Res3D-18 (25.0%) (2 of 2 seeds) by the " \
           "protocol's rule" in report
    paired = report.split("## Paired comparisons (docs/protocol.md)")[1]
    assert "data seed 7." in paired
    assert "| 7 | 50.0 | 59.4 | +9.4 |" in paired
    assert "**No claim** for DistInit Res3D-18 against Inflated Res3D-18" in paired
    assert "**DistInit R(2+1)D-18 is better than Scratch R(2+1)D-18**" in paired
    assert "older rule" not in report
    # Evaluations from before per_video.csv: the older rule, said so, and no paired tables.
    for seed in range(2):
        os.remove(os.path.join(out, "eval" + demo_distinit_report.run_suffix(seed),
                               "per_video.csv"))
    with open(demo_distinit_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "DistInit Res3D-18 (59.4%) **beats** Inflated Res3D-18 (50.0%) (2 of 2 seeds): by " \
           "more than two test videos" in report
    assert "their verdicts use the older rule" in report
    assert "## Paired comparisons" not in report


def test_a_fine_tuning_of_an_older_demo_from_seed_0s_distinit_is_not_reused(tmp_path,
                                                                             monkeypatch):
    # An out_dir of the older demo: seed 1 fine-tuned seed 0's DistInit student. Reusing its
    # marker would report that run as seed 1's own DistInit.
    ran = []
    monkeypatch.setattr(demo_distinit, "run_stage", lambda out, stage: ran.append(stage.name))
    monkeypatch.setattr(demo_distinit, "write_shape_manifest", lambda *a: "manifest.csv")
    out = str(tmp_path / "out")
    c = demo_distinit.DemoConfig(out_dir=out, configs=CONFIGS, seeds=2)
    stage = next(s for s in demo_distinit.seed_stages(c, 1)
                 if s.name == "finetune_distinit_r3d_18_seed1")
    old = [a.replace("distinit_r3d_18_seed1/model", "distinit_r3d_18/model")
           if a.startswith("--init_from=") else a for a in stage.command]
    marker = tmp_path / "out" / "stages" / "finetune_distinit_r3d_18_seed1.done"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"command": " ".join(old), "seconds": 1.0}))
    with pytest.raises(ValueError, match=(
            f"{marker} records a fine-tuning from --init_from={out}/runs/distinit_r3d_18/model,"
            f" not --init_from={out}/runs/distinit_r3d_18_seed1/model .*delete "
            f"{out}/runs/finetune/distinit_r3d_18_seed1, that marker and "
            f"{out}/stages/evaluate_seed1.done")):
        demo_distinit.run(c)
    assert ran == []  # refused before any stage
    marker.write_text(json.dumps({"command": " ".join(stage.command), "seconds": 1.0}))
    demo_distinit.run(c)  # a marker of this demo's own command is reused as before
    assert "distinit_r3d_18_seed1" in ran


def test_r2plus1d_can_run_fewer_training_seeds_and_the_reports_pair_what_ran(tmp_path):
    c = demo_distinit.DemoConfig(out_dir="out", configs=CONFIGS, seeds=3, r2plus1d_seeds=1)
    assert demo_distinit.network_seeds(c) == {"r3d_18": 3, "r2plus1d_18": 1}
    pre = [s.name for s in demo_distinit.pretraining_stages(c) if s.name.startswith("distinit")]
    assert pre == ["distinit_r3d_18", "distinit_r2plus1d_18", "distinit_r3d_18_seed1",
                   "distinit_r3d_18_seed2"]
    seed2 = {s.name: s.command for s in demo_distinit.seed_stages(c, 2)}
    assert list(seed2) == ["finetune_scratch_r3d_18_seed2", "finetune_inflated_r3d_18_seed2",
                           "finetune_distinit_r3d_18_seed2", "evaluate_seed2"]
    assert not [a for a in seed2["evaluate_seed2"] if "r2plus1d" in a]
    assert len(demo_distinit.seed_stages(c, 0)) == 6  # seed 0: all five fine-tunings
    with pytest.raises(ValueError, match="r2plus1d_seeds=4 exceeds seeds=3"):
        demo_distinit.network_seeds(demo_distinit.DemoConfig(seeds=3, r2plus1d_seeds=4))
    # Reports: R(2+1)D-18's claim pairs its one seed per data seed; Res3D-18's both seeds.
    dirs = {}
    for d in (3001, 3002, 3003):
        dirs[d] = str(tmp_path / f"data_{d}")
        _data_seed_folder(dirs[d], 0.2, seeds=1)
        _write_eval(dirs[d], demo_distinit_report.run_suffix(1),
                    dict(zip(RUNS[:3], (0.3, 0.5, 0.7))), count=40)
    seeds = {"r3d_18": 2, "r2plus1d_18": 1}
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), dirs,
                                                         seeds=seeds)) as f:
        report = f.read()
    assert "training seeds per data seed: 2 (R(2+1)D-18: 1)." in report
    sections = report.split("\n## ")
    assert "(6 cells;" in sections[2] and "(3 cells;" in sections[5]
    assert "- R(2+1)D-18, DistInit > scratch: **holds**." in report
    # Counted as if R(2+1)D-18 had run both seeds, its comparison has no second seed to pair.
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        assert "- R(2+1)D-18, DistInit > scratch: **not shown**." in f.read()
    with open(demo_distinit_report.write_report(dirs[3001], seeds=seeds, data_seed=3001)) as f:
        single = f.read()
    assert "2 (R(2+1)D-18: 1) seeds on 40 test videos" in single
    assert "DistInit R(2+1)D-18 (50.0%) **beats** Scratch R(2+1)D-18 (30.0%) by the " \
           "protocol's rule" in single


def test_a_mean_prints_the_same_in_the_per_seed_table_and_the_paired_table(tmp_path):
    # Scratch R(2+1)D-18 at 25.0 and 30.5 %: a mean of 27.75 that float arithmetic puts on
    # either side of the half depending on how it is summed (round 3 printed 27.7 and 27.8).
    out = str(tmp_path / "data_5")
    _data_seed_folder(out, 0.1, count=400)
    for seed, scratch in enumerate((0.25, 0.305)):
        _write_eval(out, demo_distinit_report.run_suffix(seed), dict(zip(
            RUNS, (0.3, 0.5, 0.7, scratch, 0.4))), count=400)
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), {5: out},
                                                         seeds=2)) as f:
        report = f.read()
    assert "| 5 | 90.0 | 30.0 | 50.0 | 70.0 | 27.8 | 40.0 |" in report
    assert "| 5 | 27.8 | 40.0 | +12.3 |" in report
    assert [demo_protocol.percent(x) for x in (0.2775, 0.27749999999999997, 0.2765)] == \
        ["27.8", "27.8", "27.7"]
    assert demo_protocol.percent(-0.1235, signed=True) == "-12.4"


def test_protocol_report_ends_with_the_cost_and_the_pretraining_speed(tmp_path):
    out = str(tmp_path / "data_5")
    _data_seed_folder(out, 0.1)
    for seed, step in enumerate((0.07, 0.09)):
        suffix = demo_distinit_report.run_suffix(seed)
        os.makedirs(os.path.join(out, "runs", "distinit_r3d_18" + suffix))
        with open(os.path.join(out, "runs", "distinit_r3d_18" + suffix,
                               "train_summary.json"), "w") as f:
            json.dump({"seconds_per_step": step}, f)
        os.makedirs(os.path.join(out, "stages"), exist_ok=True)
        with open(os.path.join(out, "stages", f"distinit_r3d_18{suffix}.done"), "w") as f:
            json.dump({"command": "...", "seconds": 100.0 + seed}, f)
    with open(demo_distinit_report.write_protocol_report(str(tmp_path), {5: out},
                                                         seeds=2)) as f:
        cost = f.read().split("## Cost on this machine")[1]
    assert "- Stages: 201 s (0.06 h) of wall time in all; data seed 5 201 s; the longest " \
           "stage distinit_r3d_18_seed1 of data seed 5 (101 s)." in cost
    assert "the DistInit Res3D-18 pre-training trained at a median 0.080 s/step over 2 runs" \
        in cost
