"""The demo's stage runner (reuse, failure) and its report (numbers land in the table)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from eval_fixtures import write_eval as _write_eval

from d3d_tf.demo import report as demo_report
from d3d_tf.demo import run as demo_run
from d3d_tf.demo import stages as demo_stages


def test_finished_stages_are_reused(tmp_path):
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('ran\\n')"]
    stage = demo_stages.Stage("append", cmd)
    assert demo_stages.run_stage(str(tmp_path), stage) > 0
    assert demo_stages.run_stage(str(tmp_path), stage) == 0.0  # marker found: not run again
    assert log.read_text() == "ran\n"
    marker = json.loads((tmp_path / "stages" / "append.done").read_text())
    assert "append" not in marker["command"] and marker["seconds"] > 0


def test_failed_stage_stops_with_its_name_and_leaves_no_marker(tmp_path):
    stage = demo_stages.Stage("broken", [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit, match="stage 'broken' failed \\(exit 3\\)"):
        demo_stages.run_stage(str(tmp_path), stage)
    assert not (tmp_path / "stages" / "broken.done").exists()


def test_seed_zero_runs_keep_their_names_so_more_seeds_reuse_them(tmp_path):
    names = {seed: [s.name for s in demo_run.seed_stages("out", "configs/demo", "out/records",
                                                         seed)]
             for seed in (0, 2)}
    assert names[0] == ["train_teacher", "train_baseline", "train_d3d", "evaluate"]
    assert names[2] == ["train_teacher_seed2", "train_baseline_seed2", "train_d3d_seed2",
                        "evaluate_seed2"]
    d3d = demo_run.seed_stages("out", "configs/demo", "out/records", 2)[2].command
    assert "--seed=2" in d3d and "--model_dir=out/runs/d3d_seed2" in d3d
    assert "--teacher=out/runs/teacher_seed2/model" in d3d  # its own seed's teacher
    evaluate = demo_run.seed_stages("out", "configs/demo", "out/records", 0)[3].command
    assert "--model_dir=out/runs/d3d/model" in evaluate and "--out_dir=out/eval" in evaluate


def test_a_shared_teacher_is_trained_once_and_serves_every_seed():
    def stages(seed):
        return demo_run.seed_stages("out", "configs/demo", "out/records", seed,
                                    shared_teacher=True)

    assert [s.name for s in stages(0)] == ["train_teacher", "train_baseline", "train_d3d",
                                           "evaluate"]
    later = {s.name: s.command for s in stages(2)}
    assert list(later) == ["train_baseline_seed2", "train_d3d_seed2", "evaluate_seed2"]
    assert "--teacher=out/runs/teacher/model" in later["train_d3d_seed2"]
    assert "--seed=2" in later["train_d3d_seed2"]
    evaluate = later["evaluate_seed2"]
    assert "--model_dir=out/runs/teacher/model" in evaluate and "--name=teacher" in evaluate
    assert "--model_dir=out/runs/d3d_seed2/model" in evaluate


def test_demo_library_modules_define_no_flags_and_no_module_imports_tensorflow():
    # `python -m d3d_tf.demo` defines its flags in d3d_tf.demo.run; if a report or stage module
    # imported it, a tool importing them next to the DistInit demo (same flag names) would hit
    # DuplicateFlagError. And no demo module imports TensorFlow before its stages run, so
    # `--help` and usage errors answer without TensorFlow's start-up.
    libraries = ("stages", "protocol", "probes", "ava", "report", "distinit_report",
                 "distinit")
    code = ("import sys, importlib; "
            f"[importlib.import_module('d3d_tf.demo.' + m) for m in {libraries!r}]; "
            "from d3d_tf.demo import report as demo_report; "
            "assert demo_report._suffixes(3) == ['', '_seed1', '_seed2']; "
            "assert 'd3d_tf.demo.run' not in sys.modules, 'a library imported d3d_tf.demo.run'; "
            "import d3d_tf.demo.run; "
            "assert 'tensorflow' not in sys.modules, 'a demo module imported tensorflow'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_module_outside_the_demo_package_imports_it():
    import ast

    package = os.path.dirname(os.path.dirname(os.path.abspath(demo_run.__file__)))
    offenders = []
    for folder, _, files in os.walk(package):
        if os.path.join(package, "demo") in (folder, os.path.dirname(folder)):
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                         if isinstance(node, ast.ImportFrom) else [])
                if any(n == "d3d_tf.demo" or n.startswith("d3d_tf.demo.") for n in names):
                    offenders.append(os.path.relpath(path, package))
    assert offenders == []


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def test_report_table_holds_the_measured_numbers(tmp_path, monkeypatch):
    out = str(tmp_path)
    accuracy = {"teacher": (0.8, 1.0), "baseline": (0.25, 0.75), "d3d": (0.5, 0.875),
                "d3d+baseline": (0.625, 1.0)}
    for seed, delta in enumerate((0.0, 0.1)):
        suffix = demo_report.run_suffix(seed)
        for name, step in (("teacher", 0.10), ("baseline", 0.12), ("d3d", 0.18)):
            _write(os.path.join(out, "runs", name + suffix, "train_summary.json"),
                   {"seconds_per_step": step + delta})
        _write_eval(out, suffix, {n: a + delta for n, (a, _) in accuracy.items()},
                    {n: b for n, (_, b) in accuracy.items()})
    _write(os.path.join(out, "records", "train_info.json"), {"flow_s": 50.0, "flow_pairs": 500})
    with open(os.path.join(out, "records", "labels.txt"), "w") as f:
        f.write("move_left\nmove_right\n")
    os.makedirs(os.path.join(out, "videos"))
    with open(os.path.join(out, "videos", "manifest.csv"), "w") as f:
        f.write("path,label_name,split\nmove_left/move_left_003.mp4,move_left,test\n")
    held_out = os.path.join(out, "videos", "move_left", "move_left_003.mp4")
    _write(os.path.join(out, "predict_saved_model.json"), {
        "video": held_out, "top_k": [{"label": "move_right", "index": 1, "score": 0.75}]})
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])  # no real video
    with open(demo_report.write_report(out, seeds=2, held_out=held_out)) as f:
        report = f.read()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in report.splitlines() if line.startswith("| ") and "---" not in line}
    d3d = rows["D3D (RGB student distilled from the flow teacher)"]
    assert d3d[:2] == ["RGB + flow", "RGB"]
    assert d3d[2] == "55.0 ± 7.1"  # mean and sample std of 50 and 60
    assert d3d[3] == "87.5 ± 0.0"
    assert d3d[4] == "0.230 ± 0.071"
    assert rows["Temporal stream (S3D-G on TV-L1 flow, the teacher)"][2] == "85.0 ± 7.1"
    assert rows["D3D + S3D-G ensemble (mean of softmaxes)"][2] == "67.5 ± 7.1"
    # D3D / baseline step time: mean(0.18, 0.28) / mean(0.12, 0.22).
    assert "= 1.35" in report
    assert "0.100 s per frame pair" in report
    assert "D3D (55.0%) beats the RGB baseline (30.0%)" in report
    assert "D3D beat the baseline in 2 of 2 seeds" in report
    assert "| 0 | 80.0 | 25.0 | 50.0 | 62.5 |" in report     # the per-seed table
    assert "| 1 | 90.0 | 35.0 | 60.0 | 72.5 |" in report
    assert "at least as good as both networks in 2 of 2 seeds" in report
    assert "(move_left, move_right)" in report  # the classes, read from labels.txt
    assert "`videos/move_left/move_left_003.mp4` (true class: move_left): move_right 0.75" in report


def test_report_calls_a_gap_of_one_test_video_noise(tmp_path, monkeypatch):
    out = str(tmp_path)
    for name in ("teacher", "baseline", "d3d"):
        _write(os.path.join(out, "runs", name, "train_summary.json"), {"seconds_per_step": 0.1})
    top1 = {"teacher": 1.0, "baseline": 20 / 32, "d3d": 21 / 32, "d3d+baseline": 0.625}
    _write_eval(out, "", top1, count=32)
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    with open(demo_report.write_report(out, seeds=1, data_seed=5)) as f:
        report = f.read()
    assert "D3D (65.6%) and the RGB baseline (62.5%) show **no reliable difference**" in report
    assert "beats the RGB baseline" not in report
    assert "| 5 | 62.5 | 65.6 | +3.1 |" in report  # the paired table names the data seed
    assert "**No claim** for D3D against S3D-G" in report
    assert "higher in 1 and lower in 0 of 1 data seed." in report
    assert "data seed 5: development seeds, never used here" in report
    # Four videos better, and no video worse, is a claim.
    top1["d3d"] = 24 / 32
    _write_eval(out, "", top1, count=32)
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "D3D (75.0%) beats the RGB baseline (62.5%)" in report
    assert "**D3D is better than S3D-G**: the pooled interval excludes 0 and the sign holds " \
           "in its one data seed." in report
    # The built-in draw is a development seed: its verdict is said to be no evidence.
    assert "data seed 0: **includes the development seed(s) 0**" in report
    assert "not evidence on new data" in report
    # Without the per-video predictions there is no verdict, and the report says why.
    os.remove(os.path.join(out, "eval", "per_video.csv"))
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "beats the RGB baseline" not in report and "No per-video predictions" in report


def test_report_says_when_the_baseline_stayed_at_chance(tmp_path, monkeypatch):
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "records"))
    with open(os.path.join(out, "records", "labels.txt"), "w") as f:
        f.write("move_left\nmove_right\nmove_up\nmove_down\n")
    for seed, (base, d3d) in enumerate(((21 / 80, 70 / 80), (20 / 80, 60 / 80))):
        suffix = demo_report.run_suffix(seed)
        top1 = {"teacher": 1.0, "baseline": base, "d3d": d3d, "d3d+baseline": d3d}
        _write_eval(out, suffix, top1, count=80)
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    with open(demo_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "D3D (81.2%) beats the RGB baseline (25.6%)" in report
    assert "The RGB baseline stayed near chance (25.6%; chance 25.0%) in every seed" in report
    assert "The D3D + S3D-G ensemble (81.2%) is as good as the better of the two" in report
    # A training seed whose baseline found the motion: D3D still ahead in both, a claim, and the
    # regime's conditions are printed (they hold: the mean baseline is 45 %).
    for seed, (base, d3d) in enumerate(((0.25, 0.70), (0.65, 0.75))):
        top1 = {"teacher": 1.0, "baseline": base, "d3d": d3d, "d3d+baseline": 0.6}
        _write_eval(out, demo_report.run_suffix(seed), top1, count=80)
    with open(demo_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "D3D (72.5%) beats the RGB baseline (45.0%)" in report
    assert "near chance in 1 of 2 seeds" in report
    assert "- data seed 0: baseline 45.0%, teacher 100.0%" in report
    assert "all conditions hold" in report
    # A D3D behind in one training seed of the only data seed: the interval spans 0.
    for seed, (base, d3d) in enumerate(((0.50, 0.70), (0.65, 0.55))):
        top1 = {"teacher": 1.0, "baseline": base, "d3d": d3d, "d3d+baseline": 0.6}
        _write_eval(out, demo_report.run_suffix(seed), top1, count=80)
    with open(demo_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "show **no reliable difference**" in report
    assert "**below** the better of the two" in report
    assert "at least as good as both networks in 0 of 2 seeds" in report


def test_report_line_reads_the_tflite_accuracy_from_the_model_card(tmp_path):
    from d3d_tf.demo import report as demo_report

    assert demo_report.tflite_accuracy_lines(str(tmp_path)) == []   # no export yet
    card = {"quantize": "int8", "int8_worst_layers": "Mixed_4b CONV_2D 2.10 steps",
            "accuracy": {"clips": 80, "tflite_top1": 0.825, "float_top1": 0.85,
                         "agreement": 0.95}}
    (tmp_path / "d3d_int8_model_card.json").write_text(json.dumps(card))
    float_card = {"quantize": "float32", "accuracy": {"clips": 80, "tflite_top1": 0.85,
                                                      "float_top1": 0.85, "agreement": 1.0}}
    (tmp_path / "d3d_float32_model_card.json").write_text(json.dumps(float_card))
    float_line, line = demo_report.tflite_accuracy_lines(str(tmp_path))
    assert "int8 TFLite on 80 test clips" in line and "top-1 82.5 % vs 85.0 %" in line
    assert "-2.5 points" not in line and "+2.5 points lost" in line
    assert "95.0 % of the clips" in line and "Mixed_4b CONV_2D" in line
    assert float_line.startswith("- float32 TFLite") and "+0.0 points lost" in float_line


def test_data_seeds_given_drawn_fresh_and_kept_for_a_rerun(tmp_path):
    from d3d_tf.demo import protocol as demo_protocol

    out = str(tmp_path)

    def resolve(**flags):  # the demo's flags as parsed (a list flag gives strings)
        return demo_run.resolve_data_seeds(demo_run.DemoConfig(
            out_dir=out, draws=demo_protocol.DataSeedsConfig(**flags)))

    assert resolve(data_seeds=("7", "9")) == [7, 9]
    assert resolve() == []  # the flagfile's one seed, in out_dir itself
    drawn = resolve(fresh_data_seeds=3)
    assert len(set(drawn)) == 3
    assert not set(drawn) & set(demo_protocol.DEVELOPMENT_DATA_SEEDS)
    assert resolve(fresh_data_seeds=3) == drawn  # a rerun resumes the same draw
    with pytest.raises(ValueError, match="3 data"):
        resolve(fresh_data_seeds=2)
    with pytest.raises(ValueError, match="not both"):
        resolve(fresh_data_seeds=2, data_seeds=("1",))
    with pytest.raises(ValueError, match="integers"):
        resolve(data_seeds=("x",))


def test_fresh_data_seeds_never_repeat_or_hit_development_seeds():
    import random

    from d3d_tf.demo import protocol as demo_protocol

    class Stuck(random.Random):  # draws a development seed and a repeat before new ones
        values = iter([101, 5000, 5000, 102, 6000])

        def randrange(self, *args):
            return next(self.values)

    assert demo_protocol.draw_fresh_data_seeds(2, Stuck()) == [5000, 6000]


def _protocol_data_seed(out, data_seed, gaps, *, first_logs=None, probe_gap=-0.3):
    """One data seed's demo folder: per-video files of two training seeds (baseline at 50 %,
    D3D `gaps[seed]` ahead), D3D train summaries and probes of both seeds."""
    for seed, gap in enumerate(gaps):
        suffix = demo_report.run_suffix(seed)
        _write_eval(out, suffix, {"teacher": 0.95, "baseline": 0.5, "d3d": 0.5 + gap,
                                  "d3d+baseline": 0.5 + gap}, count=100)
        _write(os.path.join(out, "runs", "d3d" + suffix, "train_summary.json"),
               {"first_train_logs": first_logs or {"ce": 1.4, "distill": 10.0},
                "config": {"distill_weights": [0.1]}})
        for name, epe in (("baseline", 2.0), ("d3d", 2.0 + probe_gap)):
            clips = [{"video_id": f"v{v}", "epe": epe + 0.01 * v, "zeros_epe": 2.5}
                     for v in range(100)]
            # The layout `d3d_tf.probe` writes: one result per endpoint.
            _write(os.path.join(out, "probes", name + suffix, "probe.json"),
                   {"results": [{"alias": "3A", "epe": epe, "zeros_epe": 2.5,
                                 "clips": clips}]})
    os.makedirs(os.path.join(out, "records"), exist_ok=True)
    with open(os.path.join(out, "records", "labels.txt"), "w") as f:
        f.write("a\nb\nc\nd\n")


def test_protocol_report_judges_every_claim_over_data_seeds(tmp_path):
    dirs = {}
    for d, gaps in ((3001, (0.1, 0.2)), (3002, (0.15, 0.1)), (3003, (0.05, 0.1))):
        dirs[d] = str(tmp_path / f"data_{d}")
        _protocol_data_seed(dirs[d], d, gaps)
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        report = f.read()
    assert ("Data seeds: 3001, 3002, 3003 (development seeds, never used here: 0, 101, 102)"
            in report)
    # Seed 1 was evaluated with no teacher run of its own: seed 0's served both.
    assert ("training seeds per data seed: 2 (one flow teacher per data seed (training seed "
            "0's) for every training seed)") in report
    assert "| 3001 | 50.0 | 65.0 | +15.0 |" in report
    assert "| pooled | 50.0 | 61.7 | **+11.7** |" in report
    assert "**D3D is better than S3D-G**" in report
    # λ·L_d / CE = 0.1 * 10 / 1.4 at the start: within the rule's 0.5-2.
    assert "- data seed 3001: baseline 50.0%, teacher 95.0%, λ·L_d / CE at the start " \
           "0.71–0.71: all conditions hold." in report
    assert "**D3D is better than S3D-G**: the pooled interval excludes 0 and the sign holds " \
           "in all 3 data seeds. (6 cells" in report.split("Motion probe")[1]
    # One data seed where D3D falls behind, and a λ far off the rule: no claim, and why.
    _protocol_data_seed(dirs[3003], 3003, (-0.05, -0.02), first_logs={"ce": 1.4, "distill": 80})
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        report = f.read()
    assert "**No claim** for D3D against S3D-G" in report
    assert "higher in 2 and lower in 1 of 3 data seeds" in report
    assert "λ·L_d / CE at the start 5.71–5.71, outside 0.5–2.0" in report
    os.makedirs(os.path.join(dirs[3001], "runs", "teacher_seed1"))
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        assert "training seeds per data seed: 2 (a flow teacher per training seed)" in f.read()


def test_a_report_over_development_seeds_says_it_is_no_evidence():
    from d3d_tf.demo import protocol as demo_protocol

    assert "never used here: 0, 101, 102" in demo_protocol.data_seeds_note([5000, 6000])
    note = demo_protocol.data_seeds_note([101, 5000])
    assert "includes the development seed(s) 101" in note and "not evidence" in note


def test_protocol_report_ends_with_the_cost_of_its_stages_and_the_machines_speed(tmp_path):
    dirs = {}
    for d, step in ((3001, 0.08), (3002, 0.10)):
        dirs[d] = str(tmp_path / f"data_{d}")
        _protocol_data_seed(dirs[d], d, (0.1, 0.2))
        for seed, (stage, seconds) in enumerate((("train_d3d", 200.0), ("evaluate", 20.0))):
            _write(os.path.join(dirs[d], "stages", f"{stage}.done"),
                   {"command": "...", "seconds": seconds + d - 3001})
            _write(os.path.join(dirs[d], "runs", "d3d" + demo_report.run_suffix(seed),
                                "train_summary.json"), {"seconds_per_step": step + seed / 100})
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        report = f.read()
    cost = report.split("## Cost on this machine")[1]
    assert "- Stages: 442 s (0.12 h) of wall time in all; data seed 3001 220 s, data seed " \
           "3002 222 s; the longest stage train_d3d of data seed 3002 (201 s)." in cost
    # The median of 0.08, 0.09, 0.10, 0.11 s/step.
    assert "the D3D student trained at a median 0.095 s/step over 4 runs" in cost
    # No stage has finished: no cost section.
    for folder in dirs.values():
        shutil.rmtree(os.path.join(folder, "stages"))
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        assert "## Cost" not in f.read()
