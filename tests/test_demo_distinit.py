"""`make demo-distinit`: its stages wire the runs together, run end to end with tiny settings
and are reused on rerun; its report's wording follows its numbers."""
import csv
import json
import os
import subprocess
import sys

import pytest

from d3d_tf.data import datasets
from d3d_tf.demo import distinit as demo_distinit
from d3d_tf.demo import distinit_report as demo_distinit_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "demo", "distinit")


def _flag(command, name):
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def test_stages_pass_each_run_to_the_next():
    c = demo_distinit.DemoConfig(out_dir="out", configs=CONFIGS)
    pre = {s.name: s.command for s in demo_distinit.pretraining_stages(c)}
    teacher = "out/runs/image_teacher/model"
    assert _flag(pre["teacher_targets"], "teachers") == teacher
    assert _flag(pre["inflate_r3d_18"], "source") == teacher
    for network in ("r3d_18", "r2plus1d_18"):
        run = pre[f"distinit_{network}"]
        assert _flag(run, "model") == network and _flag(run, "distinit_teachers") == teacher
        # DistInit trains on the copy that holds the teacher's logits, not on labels.
        assert _flag(run, "train_data") == "out/records/pool_targets/train-*.tfrecord"
    teacher_run = pre["train_image_teacher"]
    assert _flag(teacher_run, "labels") == "out/records/image_shapes/labels.txt"
    assert _flag(teacher_run, "train_data") == "out/records/image_shapes/train-*.tfrecord"
    assert _flag(teacher_run, "eval_data") == "out/records/pool_shapes/test-*.tfrecord"
    with open(os.path.join(CONFIGS, "prepare.flags")) as f:
        assert "--flow=none" in f.read()
    for command in pre.values():
        for arg in command:
            if arg.startswith("--flagfile="):
                assert os.path.isfile(arg.split("=", 1)[1]), arg

    seed2 = {s.name: s.command for s in demo_distinit.seed_stages(c, 2)}
    assert list(seed2) == ["finetune_scratch_r3d_18_seed2", "finetune_inflated_r3d_18_seed2",
                           "finetune_distinit_r3d_18_seed2", "finetune_scratch_r2plus1d_18_seed2",
                           "finetune_distinit_r2plus1d_18_seed2", "evaluate_seed2"]
    assert _flag(seed2["finetune_inflated_r3d_18_seed2"], "init_from") == \
        _flag(pre["inflate_r3d_18"], "out_dir") == "out/runs/inflated_r3d_18/model"
    assert _flag(seed2["finetune_distinit_r2plus1d_18_seed2"], "init_from") == \
        "out/runs/distinit_r2plus1d_18_seed2/model"  # its own seed's DistInit
    scratch = seed2["finetune_scratch_r2plus1d_18_seed2"]
    assert "--task=classify" in scratch and not any("init_from" in a for a in scratch)
    assert _flag(scratch, "seed") == "2"
    evaluate = seed2["evaluate_seed2"]
    assert _flag(evaluate, "out_dir") == "out/eval_seed2"
    # The evaluation names carry no seed suffix: the report looks them up per seed folder.
    assert [a for a in evaluate if a.startswith("--name=")][2] == "--name=distinit_r3d_18"
    assert "--model_dir=out/runs/finetune/distinit_r3d_18_seed2/model" in evaluate
    seed0 = [s.name for s in demo_distinit.seed_stages(c, 0)]
    assert seed0[0] == "finetune_scratch_r3d_18" and seed0[-1] == "evaluate"


def test_a_configs_folder_without_the_flagfiles_is_refused_naming_them(tmp_path):
    (tmp_path / "pool.flags").write_text("--classes=2\n")
    c = demo_distinit.DemoConfig(out_dir=str(tmp_path / "out"), configs=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="lacks labeled.flags, images.flags, "
                       "prepare.flags, teacher.flags, distinit.flags, inflate.flags, "
                       "finetune.flags"):
        demo_distinit.run(c)
    assert not (tmp_path / "out").exists()


def test_shape_manifest_labels_every_pool_video_by_its_shape(tmp_path):
    pool = tmp_path / "videos" / "pool"
    pool.mkdir(parents=True)
    rows = [("star_move_left/a.mp4", "star_move_left", "train", "star"),
            ("ellipse_move_up/b.mp4", "ellipse_move_up", "test", "ellipse"),
            ("star_move_up/c.mp4", "star_move_up", "train", "star")]
    with open(pool / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label_name", "split", "shape"])
        writer.writerows(rows)
    path = demo_distinit.write_shape_manifest(str(pool), str(tmp_path / "videos" / "shapes"))
    entries, labels = datasets.read_manifest(path)  # what `prepare --format=manifest` reads
    assert labels == ["ellipse", "star"]  # the generator's shape order, only those present
    assert [(e.label_name, e.split) for e in entries] == [("star", "train"), ("ellipse", "test"),
                                                          ("star", "train")]
    assert [os.path.abspath(e.path) for e in entries] == [str(pool / r[0]) for r in rows]
    with open(pool / "manifest.csv", "w") as f:
        f.write("path,label_name,split\na.mp4,x,train\n")
    with pytest.raises(ValueError, match="no 'shape' column"):
        demo_distinit.write_shape_manifest(str(pool), str(tmp_path / "shapes2"))


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def _results(top1, count=32):
    return {name: {"clip": {"top1": a - 0.03125}, "video": {"top1": a, "top5": 1.0,
                                                           "count": count}}
            for name, a in top1.items()}


def _report(out, seeds):
    with open(demo_distinit_report.write_report(str(out), seeds=seeds)) as f:
        return f.read()


def test_report_table_and_claims_follow_the_numbers(tmp_path):
    per_seed = ({"scratch_r3d_18": 12 / 32, "inflated_r3d_18": 16 / 32,
                 "distinit_r3d_18": 24 / 32, "scratch_r2plus1d_18": 12 / 32,
                 "distinit_r2plus1d_18": 13 / 32},
                {"scratch_r3d_18": 14 / 32, "inflated_r3d_18": 18 / 32,
                 "distinit_r3d_18": 26 / 32, "scratch_r2plus1d_18": 14 / 32,
                 "distinit_r2plus1d_18": 13 / 32})
    for seed, top1 in enumerate(per_seed):
        _write(os.path.join(tmp_path, "eval" + demo_distinit_report.run_suffix(seed),
                            "results.json"), _results(top1))
    report = _report(tmp_path, 2)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in report.splitlines()
            if line.startswith("| ") and "---" not in line]
    # The paper's layout: Model | Initialization | Per clip | Top 1 | Top 5, then the source.
    assert rows[0] == ["Model", "Initialization", "Per clip", "Top 1", "Top 5",
                       "Learned before fine-tuning from"]
    table = {(r[1], r[0]): r[2:5] for r in rows if len(r) == 6}
    # Mean and sample std of 75.0 and 81.25 (video), of the clip values 3.125 points lower.
    assert table[("DistInit", "Res3D-18")] == ["75.0 ± 4.4", "78.1 ± 4.4", "100.0 ± 0.0"]
    assert table[("Scratch", "R(2+1)D-18")][1] == "40.6 ± 4.4"
    assert table[("Inflated", "R(2+1)D-18")] == ["—", "—", "—"]
    assert "DistInit Res3D-18 (78.1%) **beats** Scratch Res3D-18 (40.6%) (2 of 2 seeds)" \
        in report
    assert "DistInit Res3D-18 (78.1%) **beats** Inflated Res3D-18 (53.1%)" in report
    # 40.6 vs 40.6 on average, and the sign changes between seeds: no claim.
    assert ("DistInit R(2+1)D-18 (40.6%) and Scratch R(2+1)D-18 (40.6%) show **no reliable "
            "difference** (1 of 2 seeds)") in report
    assert "supports the paper's Table 1 only in part" in report
    assert "one video is 3.1 points" in report


def test_report_says_when_distinit_does_not_help(tmp_path):
    # One test video better (within noise) for Res3D-18, many worse for R(2+1)D-18.
    _write(os.path.join(tmp_path, "eval", "results.json"), _results(
        {"scratch_r3d_18": 20 / 32, "inflated_r3d_18": 21 / 32, "distinit_r3d_18": 21 / 32,
         "scratch_r2plus1d_18": 20 / 32, "distinit_r2plus1d_18": 14 / 32}))
    report = _report(tmp_path, 1)
    assert "DistInit Res3D-18 (65.6%) and Scratch Res3D-18 (62.5%) show **no reliable " \
           "difference**" in report
    assert "DistInit R(2+1)D-18 (43.8%) is **worse** than Scratch R(2+1)D-18 (62.5%)" in report
    assert "**beats**" not in report
    assert "does **not** show DistInit's gain" in report
    # Three test videos better in the only seed is a claim.
    _write(os.path.join(tmp_path, "eval", "results.json"), _results(
        {"scratch_r3d_18": 20 / 32, "inflated_r3d_18": 21 / 32, "distinit_r3d_18": 24 / 32,
         "scratch_r2plus1d_18": 20 / 32, "distinit_r2plus1d_18": 24 / 32}))
    report = _report(tmp_path, 1)
    assert "DistInit Res3D-18 (75.0%) **beats** Inflated Res3D-18 (65.6%)" in report
    assert "agrees with the paper's Table 1" in report


def test_report_says_when_every_run_and_the_teacher_are_near_chance(tmp_path):
    def write(top1, teacher):
        _write(os.path.join(tmp_path, "eval", "results.json"), _results(top1))
        _write(os.path.join(tmp_path, "runs", "image_teacher", "train_summary.json"),
               {"clip_top1": teacher, "video_top1": teacher})
    labels = tmp_path / "records" / "labeled" / "labels.txt"
    labels.parent.mkdir(parents=True)
    labels.write_text("".join(f"c{i}\n" for i in range(8)))  # chance 12.5%: 4 of 32 videos
    shapes = tmp_path / "records" / "pool_shapes" / "labels.txt"
    shapes.parent.mkdir(parents=True)
    shapes.write_text("ellipse\nrectangle\ntriangle\nstar\n")
    near = {"scratch_r3d_18": 3 / 32, "inflated_r3d_18": 2 / 32, "distinit_r3d_18": 6 / 32,
            "scratch_r2plus1d_18": 4 / 32, "distinit_r2plus1d_18": 5 / 32}
    write(near, 0.25)
    report = _report(tmp_path, 1)
    assert "**Every run ended near chance** (at most 18.8%, chance 12.5%" in report
    assert "**The image teacher is near chance** on held-out pool videos (25.0% per video, " \
           "chance 25.0%)" in report
    assert "4 shapes, chance 25.0%" in report
    # One run seven videos above chance, a teacher at 75%: neither line.
    write({**near, "distinit_r3d_18": 11 / 32}, 0.75)
    report = _report(tmp_path, 1)
    assert "near chance" not in report


def _tiny_configs(tmp_path):
    """The demo's flagfiles, each read first and then shrunk to seconds of work."""
    tiny = {
        "pool": "--shape_classes=2 --classes=2 --videos_per_class=2 --test_fraction=0.5 "
                "--frames=8 --size=24",
        "labeled": "--shape_classes=2 --videos_per_class=2 --test_fraction=0.5 --frames=8 "
                   "--size=24",
        "images": "--shape_classes=2 --classes=2 --videos_per_class=2 --frames=2 --size=24",
        "prepare": "--num_shards=1",
        "teacher": "--depth_multiplier=0.125 --crop_size=16 --batch_size=4 --train_steps=2 "
                   "--warmup_steps=0 --checkpoint_every=2 --eval_clips=1 --log_every=1",
        "distinit": "--depth_multiplier=0.125 --num_frames=4 --crop_size=16 --batch_size=2 "
                    "--train_steps=2 --warmup_steps=0 --checkpoint_every=2 --log_every=1",
        "inflate": "--num_frames=4 --crop_size=16",
        "finetune": "--depth_multiplier=0.125 --num_frames=4 --crop_size=16 --batch_size=2 "
                    "--train_steps=2 --warmup_steps=0 --checkpoint_every=2 --log_every=1",
    }
    configs = tmp_path / "tiny"
    configs.mkdir()
    for name, flags in tiny.items():
        lines = [f"--flagfile={os.path.join(CONFIGS, name + '.flags')}", *flags.split()]
        (configs / f"{name}.flags").write_text("\n".join(lines) + "\n")
    # The flagfiles include each other by paths from the repository, as the demo runs there.
    (tmp_path / "configs").symlink_to(os.path.join(REPO, "configs"))
    return str(configs)


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_and_reuses_its_stages(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "d3d_tf.demo.distinit", f"--out_dir={out}",
               f"--configs={_tiny_configs(tmp_path)}", "--workers=1"]
    env = {**os.environ, "PYTHONPATH": REPO}
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                           check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    c = demo_distinit.DemoConfig(out_dir=str(out))
    names = [s.name for s in demo_distinit.pretraining_stages(c) + demo_distinit.seed_stages(
        c, 0) + demo_distinit.representation_stages(c)]
    assert sorted(os.listdir(out / "stages")) == sorted(f"{n}.done" for n in names)
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results) == {"scratch_r3d_18", "inflated_r3d_18", "distinit_r3d_18",
                            "scratch_r2plus1d_18", "distinit_r2plus1d_18"}
    # The image teacher's classes are the image set's shapes, the pool's too (its held-out
    # videos evaluate the teacher); the DistInit students predict them.
    for shapes in ("image_shapes", "pool_shapes"):
        assert (out / "records" / shapes / "labels.txt").read_text().split() == \
            ["ellipse", "rectangle"]
    spec = json.loads((out / "runs" / "distinit_r2plus1d_18" / "model" / "model.json").read_text())
    assert spec["name"] == "r2plus1d_18" and spec["num_classes"] == 2
    report = (out / "report.md").read_text()
    assert "| R(2+1)D-18 | DistInit |" in report and "representation/distinit_r3d_18/" in report
    (out / "report.md").unlink()

    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                           check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipping") == len(names)
    assert "=====" not in again.stdout  # no stage ran a second time
    assert (out / "report.md").exists()


def test_teacher_lines_report_the_mean_of_the_last_steps_not_the_last_batch(tmp_path):
    from d3d_tf.demo import distinit_report as report

    run = tmp_path / "runs" / "distinit_r3d_18"
    run.mkdir(parents=True)
    summary = {"step": 1500, "final_train_logs": {"distinit": 2.0, "teacher_entropy": 0.5},
               "mean_train_logs": {"distinit": 1.234, "teacher_entropy": 0.5,
                                   "teacher_top1": 0.75},
               "mean_train_logs_steps": 50}
    (run / "train_summary.json").write_text(json.dumps(summary))
    [line] = report._teacher_lines(str(tmp_path), {}, 4)
    assert "over the last 50 steps: soft cross-entropy 1.234" in line and "75%" in line
    del summary["mean_train_logs"]   # a run from before the mean was recorded
    (run / "train_summary.json").write_text(json.dumps(summary))
    [line] = report._teacher_lines(str(tmp_path), {}, 4)
    assert "over the last batch: soft cross-entropy 2.000" in line
