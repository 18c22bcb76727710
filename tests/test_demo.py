"""The demo's stage runner (reuse, failure) and its report (numbers land in the table)."""
import json
import os
import subprocess
import sys

import pytest

from d3d_tf import demo, demo_report


def test_finished_stages_are_reused(tmp_path):
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-c", f"open({str(log)!r}, 'a').write('ran\\n')"]
    stage = demo.Stage("append", cmd)
    assert demo.run_stage(str(tmp_path), stage) > 0
    assert demo.run_stage(str(tmp_path), stage) == 0.0  # marker found: not run again
    assert log.read_text() == "ran\n"
    marker = json.loads((tmp_path / "stages" / "append.done").read_text())
    assert "append" not in marker["command"] and marker["seconds"] > 0


def test_failed_stage_stops_with_its_name_and_leaves_no_marker(tmp_path):
    stage = demo.Stage("broken", [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit, match="stage 'broken' failed \\(exit 3\\)"):
        demo.run_stage(str(tmp_path), stage)
    assert not (tmp_path / "stages" / "broken.done").exists()


def test_seed_zero_runs_keep_their_names_so_more_seeds_reuse_them(tmp_path):
    names = {seed: [s.name for s in demo.seed_stages("out", "configs/demo", "out/records", seed)]
             for seed in (0, 2)}
    assert names[0] == ["train_teacher", "train_baseline", "train_d3d", "evaluate"]
    assert names[2] == ["train_teacher_seed2", "train_baseline_seed2", "train_d3d_seed2",
                        "evaluate_seed2"]
    d3d = demo.seed_stages("out", "configs/demo", "out/records", 2)[2].command
    assert "--seed=2" in d3d and "--model_dir=out/runs/d3d_seed2" in d3d
    assert "--teacher=out/runs/teacher_seed2/model" in d3d  # its own seed's teacher
    evaluate = demo.seed_stages("out", "configs/demo", "out/records", 0)[3].command
    assert "--model_dir=out/runs/d3d/model" in evaluate and "--out_dir=out/eval" in evaluate


def test_report_module_does_not_import_the_demo_cli():
    # `python -m d3d_tf.demo` runs as __main__; if the report imported d3d_tf.demo, its flags
    # would be defined a second time (DuplicateFlagError) when the report is written.
    code = ("import sys; from d3d_tf import demo_report; "
            "assert demo_report._suffixes(3) == ['', '_seed1', '_seed2']; "
            "assert 'd3d_tf.demo' not in sys.modules, 'demo_report imported d3d_tf.demo'")
    subprocess.run([sys.executable, "-c", code], check=True)


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
        _write(os.path.join(out, "eval" + suffix, "results.json"),
               {n: {"video": {"top1": a + delta, "top5": b}} for n, (a, b) in accuracy.items()})
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
    _write(os.path.join(out, "eval", "results.json"),
           {n: {"video": {"top1": a, "top5": 1.0, "count": 32}} for n, a in top1.items()})
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    with open(demo_report.write_report(out, seeds=1)) as f:
        report = f.read()
    assert "D3D (65.6%) and the RGB baseline (62.5%) show **no reliable difference**" in report
    assert "beats the RGB baseline" not in report
    # Four videos better is a claim.
    top1["d3d"] = 24 / 32
    _write(os.path.join(out, "eval", "results.json"),
           {n: {"video": {"top1": a, "top5": 1.0, "count": 32}} for n, a in top1.items()})
    with open(demo_report.write_report(out, seeds=1)) as f:
        assert "D3D (75.0%) beats the RGB baseline (62.5%)" in f.read()


def test_report_says_when_the_baseline_stayed_at_chance(tmp_path, monkeypatch):
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "records"))
    with open(os.path.join(out, "records", "labels.txt"), "w") as f:
        f.write("move_left\nmove_right\nmove_up\nmove_down\n")
    for seed, (base, d3d) in enumerate(((21 / 80, 70 / 80), (20 / 80, 60 / 80))):
        suffix = demo_report.run_suffix(seed)
        top1 = {"teacher": 1.0, "baseline": base, "d3d": d3d, "d3d+baseline": d3d}
        _write(os.path.join(out, "eval" + suffix, "results.json"),
               {n: {"video": {"top1": a, "top5": 1.0, "count": 80}} for n, a in top1.items()})
    monkeypatch.setattr(demo_report, "flow_pictures", lambda *a, **k: [])
    with open(demo_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "D3D (81.2%) beats the RGB baseline (25.6%)" in report
    assert "The RGB baseline stayed near chance (25.6%; chance 25.0%) in every seed" in report
    assert "The D3D + S3D-G ensemble (81.2%) is as good as the better of the two" in report
    # Twice the baseline's seed std is the bar when it exceeds two test videos.
    for seed, (base, d3d) in enumerate(((0.25, 0.70), (0.65, 0.75))):
        top1 = {"teacher": 1.0, "baseline": base, "d3d": d3d, "d3d+baseline": 0.6}
        _write(os.path.join(out, "eval" + demo_report.run_suffix(seed), "results.json"),
               {n: {"video": {"top1": a, "top5": 1.0, "count": 80}} for n, a in top1.items()})
    with open(demo_report.write_report(out, seeds=2)) as f:
        report = f.read()
    assert "show **no reliable difference**" in report  # gap 27.5 < 2 x std 28.3
    assert "near chance in 1 of 2 seeds" in report
    assert "**below** the better of the two" in report
    assert "at least as good as both networks in 0 of 2 seeds" in report


def test_report_line_reads_the_tflite_accuracy_from_the_model_card(tmp_path):
    from d3d_tf import demo_report

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
