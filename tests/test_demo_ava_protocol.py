"""The demo's AVA comparison (D3D vs S3D-G backbone, frame-mAP) under the evidence protocol:
its stages, the video-resampled frame-mAP, the paired statistic bootstrap and the reports."""
import dataclasses
import os

import numpy as np
import pytest

from d3d_tf import methods
from d3d_tf.ava import ava
from d3d_tf.ava import frame_map as ava_map
from d3d_tf.demo import ava as demo_ava
from d3d_tf.demo import report as demo_report
from d3d_tf.metrics import paired

LABELS = ava.LabelMap((1, 2), ("left", "right"))


def _arg(command, flag):
    values = [c.split("=", 1)[1] for c in command if str(c).startswith(f"--{flag}=")]
    assert values, (flag, command)
    return values[-1]  # the last one wins over the flagfile's


def test_stages_train_both_detectors_per_training_seed_from_that_seeds_runs(tmp_path):
    out = str(tmp_path / "data_1234")
    stages = demo_ava.stages(out, "configs/demo", train_seeds=2, data_seed=1234, workers=1)
    names = [s.name for s in stages]
    assert names == ["ava_synthetic", "ava_prepare_train", "ava_prepare_val",
                     "ava_train_baseline", "ava_train_d3d",
                     "ava_evaluate_baseline", "ava_evaluate_d3d",
                     "ava_train_baseline_seed1", "ava_train_d3d_seed1",
                     "ava_evaluate_baseline_seed1", "ava_evaluate_d3d_seed1"]
    by_name = {s.name: s.command for s in stages}
    synthetic = by_name["ava_synthetic"]
    assert synthetic[2] == "d3d_tf.synthetic" and _arg(synthetic, "seed") == "1234"
    assert _arg(synthetic, "flagfile") == "configs/demo/ava_synthetic.flags"
    assert _arg(synthetic, "out_dir") == os.path.join(out, "ava", "videos")
    for split in ("train", "val"):
        prep = by_name[f"ava_prepare_{split}"]
        assert _arg(prep, "split") == split
        assert _arg(prep, "out_dir") == os.path.join(out, "ava", "records")
        assert _arg(prep, "annotations").endswith(f"ava/videos/ava_{split}_v2.2.csv")
    for seed, suffix in ((0, ""), (1, "_seed1")):
        for name in ("baseline", "d3d"):
            train = by_name[f"ava_train_{name}{suffix}"]
            assert train[2] == "d3d_tf.train"
            assert train[3] == "--flagfile=configs/demo/ava.flags"  # first: the rest override
            assert _arg(train, "init_from") == os.path.join(out, "runs", name + suffix, "model")
            assert _arg(train, "seed") == str(seed)
            run = os.path.join(out, "ava", "runs", name + suffix)
            assert _arg(train, "model_dir") == run
            assert _arg(train, "train_data") == os.path.join(out, "ava", "records",
                                                             "train-*.tfrecord")
            ev = by_name[f"ava_evaluate_{name}{suffix}"]
            assert "--task=ava" in ev and _arg(ev, "model_dir") == run
            assert _arg(ev, "data") == os.path.join(out, "ava", "records", "val-*.tfrecord")
            assert _arg(ev, "out_dir") == os.path.join(out, "ava", "eval", name + suffix)
            assert _arg(ev, "ava_groundtruth").endswith("ava/videos/ava_val_v2.2.csv")
        # Both detectors of a training seed differ only in --init_from and their folders.
        strip = ("--init_from=", "--model_dir=")
        a, b = (by_name[f"ava_train_{n}{suffix}"] for n in ("baseline", "d3d"))
        assert [c for c in a if not c.startswith(strip)] == \
            [c for c in b if not c.startswith(strip)]


def test_demo_runs_the_ava_stages_only_with_the_option(tmp_path, monkeypatch):
    from d3d_tf.demo import run as demo_run

    ran = []
    monkeypatch.setattr(demo_run, "run_stage", lambda out, stage: ran.append(stage))
    c = demo_run.DemoConfig(seeds=2, export=False, configs="configs/demo")
    demo_run.run_data_seed(c, str(tmp_path / "a"), 77)
    assert not [s for s in ran if s.name.startswith("ava_")]
    ran.clear()
    demo_run.run_data_seed(dataclasses.replace(c, ava=True), str(tmp_path / "b"), 77)
    names = [s.name for s in ran]
    ava_names = [n for n in names if n.startswith("ava_")]
    assert len(ava_names) == 11
    # After every classification run they start from.
    assert names.index("ava_synthetic") > names.index("train_d3d_seed1")
    synthetic = next(s for s in ran if s.name == "ava_synthetic").command
    assert _arg(synthetic, "seed") == "77"


def test_ava_seeds_limit_the_detectors_and_the_reports_pair_what_ran(tmp_path, monkeypatch):
    from d3d_tf.demo import run as demo_run

    ran = []
    monkeypatch.setattr(demo_run, "run_stage", lambda out, stage: ran.append(stage.name))
    c = demo_run.DemoConfig(seeds=3, ava=True, ava_seeds=2, export=False, configs="configs/demo",
                            probe_teacher=False)
    demo_run.run_data_seed(c, str(tmp_path / "stages"), 77)
    assert "train_d3d_seed2" in ran and "probe_d3d_seed2" in ran  # the classification: 3 seeds
    assert "train_teacher" in ran and "probe_teacher" not in ran
    detectors = [n for n in ran if n.startswith(("ava_train_", "ava_evaluate_"))]
    assert len(detectors) == 8 and not [n for n in detectors if n.endswith("_seed2")]
    with pytest.raises(ValueError, match="ava_seeds=4 exceeds seeds=3"):
        demo_run.run(dataclasses.replace(c, ava_seeds=4, out_dir=str(tmp_path / "refused")))
    assert not (tmp_path / "refused").exists()

    # The reports pair the two training seeds that ran, not the demo's three.
    dirs = {11: str(tmp_path / "data_11"), 12: str(tmp_path / "data_12")}
    for d, folder in dirs.items():
        _fake_ava_dir(folder, d, 2, wrong_a=1)
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=3,
                                                ava_seeds=2)) as f:
        section = f.read().split("## AVA: D3D backbone against S3D-G backbone")[1]
    assert "training seeds 0–1 of each data seed" in section
    assert "data seed 12 / training seed 1:" in section and "training seed 2:" not in section
    assert "**D3D backbone is better than S3D-G backbone**" in section
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=3)) as f:
        assert "missing AVA results" in f.read()  # all three seeds asked for: one is missing
    with open(demo_report.write_report(dirs[11], seeds=3, data_seed=11, ava_seeds=2)) as f:
        assert "training seeds 0–1 of each data seed" in f.read()


def test_demo_refuses_ava_without_its_flagfiles(tmp_path):
    from d3d_tf.demo import run as demo_run

    (tmp_path / "synthetic.flags").write_text("--seed=0\n")
    with pytest.raises(ValueError, match="ava_synthetic.flags"):
        demo_run.run(demo_run.DemoConfig(ava=True, configs=str(tmp_path),
                                         out_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_16_frame_classifier_initialises_an_8_frame_detector(tmp_path):
    # The demo's classifiers see 16x64^2 clips, its detectors 8x64^2: the backbone's
    # weights do not depend on the number of frames.
    from d3d_tf.ava import ava_head
    from d3d_tf.ava import task as ava_task
    from d3d_tf.models import s3dg, saving

    cfg = s3dg.make_config("s3dg", depth_multiplier=0.1)
    classifier = s3dg.build_classifier("s3dg", num_classes=4, input_shape=(16, 32, 32, 3),
                                       config=cfg)
    rng = np.random.default_rng(0)
    for w in classifier.weights:
        value = rng.normal(size=w.shape) * 0.05
        w.assign((np.abs(value) + 0.5 if "variance" in w.path else value).astype(np.float32))
    model = str(tmp_path / "run" / "model")
    saving.save_model_dir(model, classifier, saving.spec_for(
        classifier, name="s3dg", labels=list("abcd")))
    c = methods.TrainConfig(model_dir=str(tmp_path / "ava"), train_data="unused", task="ava",
                            model="s3dg", init_from=model, num_frames=8, crop_size=32,
                            ava_roi_size=2, batch_norm_decay=0.9)
    detector = ava_task.build_detector(c, 2)
    loaded = ava_head.init_backbone(detector, model)
    assert detector.input["rgb"].shape[1:] == (8, 32, 32, 3)
    backbone = [w for w in classifier.weights if not w.path.startswith("Logits.")]
    assert len(loaded) == len(backbone)
    values = {w.path: np.asarray(w) for w in detector.weights}
    for w in backbone:
        np.testing.assert_array_equal(values[w.path], np.asarray(w))


# --- frame-mAP on resampled videos -----------------------------------------------------------

def _scene(videos=6, keyframes=2, seed=0):
    """Ground truth: two people per keyframe, one of class 1 (left half), one of class 2."""
    rng = np.random.default_rng(seed)
    gt = {}
    for v in range(videos):
        for t in range(keyframes):
            y = rng.uniform(0.1, 0.4)
            gt[(f"vid{v}", 902 + t)] = ava.Boxes(
                boxes=[[0.05, y, 0.45, y + 0.5], [0.55, y, 0.95, y + 0.5]], labels=[1, 2],
                scores=[1.0, 1.0])
    return gt


def _detect(gt, wrong_per_video=0, seed=0):
    """Both classes scored on every ground-truth box: the right class high, the wrong one low,
    except on `wrong_per_video` keyframes of every video, where the person's scores swap."""
    rng = np.random.default_rng(seed)
    dets, swapped = {}, {}
    for (vid, ts), e in sorted(gt.items()):
        d = ava.Boxes()
        swap = swapped.get(vid, 0) < wrong_per_video
        swapped[vid] = swapped.get(vid, 0) + swap
        for box, label in zip(e.boxes, e.labels):
            for cls in (1, 2):
                right = (cls == label) != (swap and label == 1)
                d.boxes.append(box)
                d.labels.append(cls)
                d.scores.append(float(rng.uniform(0.6, 0.99) if right else
                                      rng.uniform(0.01, 0.4)))
        dets[(vid, ts)] = d
    return dets


def test_resampled_map_of_the_test_set_is_frame_map_and_weights_count_videos_twice():
    rng = np.random.default_rng(3)
    gt = _scene(videos=5, keyframes=3, seed=1)
    dets = _detect(gt, seed=2)
    for e in dets.values():  # noisy scores and boxes, and a false box, so AP is not 1
        e.scores[:] = rng.uniform(0, 1, len(e.scores)).tolist()
        e.boxes.append([0.3, 0.0, 0.6, 0.2])
        e.labels.append(1)
        e.scores.append(float(rng.uniform(0, 1)))
    excluded = {("vid1", 903)}
    videos = ava_map.scored_videos(gt, dets, excluded=excluded)
    assert videos == [f"vid{v}" for v in range(5)]
    stat = ava_map.VideoResampledMap(gt, dets, LABELS, excluded, videos=videos)
    full = ava_map.frame_map(gt, dets, LABELS, excluded)["mAP"]
    assert 0.2 < full < 0.95
    assert stat(np.ones(5))[0] == pytest.approx(full, abs=1e-12)

    # A resample: vid0 twice, vid2 left out, vid4 three times: frame_map of that data set.
    counts = np.array([2, 1, 0, 1, 3])
    re_gt, re_dets, re_excluded = {}, {}, set()
    for v, k in zip(videos, counts):
        for copy in range(k):
            for src, dst in ((gt, re_gt), (dets, re_dets)):
                for (vid, ts), e in src.items():
                    if vid == v:
                        dst[(f"{vid}#{copy}", ts)] = e
            re_excluded |= {(f"{vid}#{copy}", ts) for vid, ts in excluded if vid == v}
    expected = ava_map.frame_map(re_gt, re_dets, LABELS, re_excluded)["mAP"]
    values = stat(np.stack([counts, np.ones(5)]))
    assert values == pytest.approx([expected, full], abs=1e-12)
    assert expected != pytest.approx(full)


def _cells(data_seeds, train_seeds, wrong_a, wrong_b, videos=6):
    cells = []
    for d in data_seeds:
        gt = _scene(videos=videos, seed=d)
        names = ava_map.scored_videos(gt)
        for s in range(train_seeds):
            a = ava_map.VideoResampledMap(gt, _detect(gt, wrong_a, seed=10 * d + s), LABELS,
                                          videos=names)
            b = ava_map.VideoResampledMap(gt, _detect(gt, wrong_b, seed=10 * d + s + 5),
                                          LABELS, videos=names)
            cells.append(paired.StatisticCell(d, s, len(names), a, b))
    return cells


def test_a_detector_better_on_every_video_gets_an_interval_above_zero():
    # B ranks every person right (AP 1 on any resample); A swaps one person's scores on one
    # keyframe of every video, so every resample's frame-mAP of A is below 1.
    result = paired.compare_statistic(_cells((1, 2), 2, wrong_a=1, wrong_b=0), draws=400)
    assert result.verdict() == "B > A"
    assert result.pooled.low > 0 and result.pooled.mean_b == 1.0
    assert all(g.low > 0 for g in result.per_data_seed.values())
    assert result.videos == {1: 6, 2: 6}
    assert all(g > 0 for g in result.cells.values())


def test_identical_detectors_get_an_interval_of_exactly_zero():
    gt = _scene(seed=4)
    names = ava_map.scored_videos(gt)
    cells = []
    for s in range(2):
        dets = _detect(gt, wrong_per_video=1, seed=s)
        a = ava_map.VideoResampledMap(gt, dets, LABELS, videos=names)
        b = ava_map.VideoResampledMap(gt, dets, LABELS, videos=names)
        cells.append(paired.StatisticCell(7, s, len(names), a, b))
    result = paired.compare_statistic(cells, draws=300)
    g = result.per_data_seed[7]
    assert (g.mean, g.low, g.high) == (0.0, 0.0, 0.0)
    assert (result.pooled.low, result.pooled.high) == (0.0, 0.0)
    assert 0 < g.mean_a < 1 and result.verdict() == "no claim"


def test_a_mean_as_statistic_reproduces_compare():
    # compare_statistic draws the same resamples as compare: with the mean over videos as the
    # statistic it gives compare's numbers.
    rng = np.random.default_rng(0)
    plain, stats = [], []
    for d in (3, 5):
        for s in range(2):
            a = rng.integers(0, 2, 30).astype(float)
            b = rng.integers(0, 2, 30).astype(float)
            plain.append(paired.Cell(d, s, a, b))
            stats.append(paired.StatisticCell(d, s, 30, lambda w, x=a: w @ x / 30,
                                              lambda w, x=b: w @ x / 30))
    x = paired.compare(plain, draws=2000, seed=9)
    y = paired.compare_statistic(stats, draws=2000, seed=9)
    for g, h in [(x.pooled, y.pooled)] + [(x.per_data_seed[d], y.per_data_seed[d])
                                          for d in (3, 5)]:
        for field in ("mean", "low", "high", "mean_a", "mean_b"):
            assert getattr(h, field) == pytest.approx(getattr(g, field), abs=1e-9)
    assert y.cells == pytest.approx(x.cells) and y.videos == x.videos


@pytest.mark.parametrize("cells, message", [
    ([], "no cells"),
    ([paired.StatisticCell(1, 0, 4, None, None), paired.StatisticCell(1, 0, 4, None, None)],
     "data seed 1: training seed listed twice"),
    ([paired.StatisticCell(2, 0, 4, None, None), paired.StatisticCell(2, 1, 5, None, None)],
     "data seed 2: every cell needs the same"),
])
def test_bad_statistic_cells_are_refused_with_the_data_seed(cells, message):
    with pytest.raises(ValueError, match=message):
        paired.compare_statistic(cells)


# --- the reports ------------------------------------------------------------------------------

def _fake_ava_dir(out_dir, data_seed, train_seeds, wrong_a):
    """What the AVA stages leave in a data seed's out_dir: the val CSVs and label map, and
    every evaluation's detections.csv and results.json."""
    videos = os.path.join(out_dir, "ava", "videos")
    os.makedirs(videos)
    gt = _scene(seed=data_seed)
    rows = [f"{vid},{ts:04d},{','.join(f'{v:.3f}' for v in box)},{label},{p}\n"
            for (vid, ts), e in sorted(gt.items())
            for p, (box, label) in enumerate(zip(e.boxes, e.labels))]
    with open(os.path.join(videos, "ava_val_v2.2.csv"), "w") as f:
        f.writelines(rows)
    with open(os.path.join(videos, "ava_val_excluded_timestamps_v2.2.csv"), "w") as f:
        f.write("vid5,0903\n")
    ava.write_label_map(os.path.join(videos, demo_ava.LABEL_MAP), LABELS.ids, LABELS.names)
    maps = {}
    for s in range(train_seeds):
        for name, wrong in (("baseline", wrong_a), ("d3d", 0)):
            dets = _detect(gt, wrong, seed=100 * data_seed + s)
            folder = demo_ava.eval_dir(out_dir, name, s)
            os.makedirs(folder)
            ava_map.write_detections_csv(os.path.join(folder, "detections.csv"), (
                (vid, ts, box, a, score) for (vid, ts), e in sorted(dets.items())
                for box, a, score in zip(e.boxes, e.labels, e.scores)))
            with open(os.path.join(folder, "results.json"), "w") as f:
                f.write('{"random_scores_frame_mAP": 0.5}')
            maps[(name, s)] = ava_map.frame_map(gt, dets, LABELS, {("vid5", 903)})["mAP"]
    return maps


def test_protocol_and_seed_reports_hold_the_ava_comparison(tmp_path):
    dirs = {11: str(tmp_path / "data_11"), 12: str(tmp_path / "data_12")}
    maps = {d: _fake_ava_dir(folder, d, 2, wrong_a=1) for d, folder in dirs.items()}
    with open(demo_report.write_protocol_report(str(tmp_path), dirs, seeds=2)) as f:
        text = f.read()
    section = text[text.index("## AVA: D3D backbone against S3D-G backbone"):]
    assert "reports this comparison either way" in section
    for d in dirs:
        base = np.mean([maps[d][("baseline", s)] for s in range(2)])
        assert f"| {d} | {100 * base:.1f} | 100.0 | {100 * (1 - base):+.1f} |" in section
    pooled = np.mean([np.mean([m[("baseline", s)] for s in range(2)]) for m in maps.values()])
    assert f"| pooled | {100 * pooled:.1f} | 100.0 | **{100 * (1 - pooled):+.1f}** |" in section
    assert "**D3D backbone is better than S3D-G backbone**" in section
    assert "data seed 12 / training seed 1:" in section
    assert "data seed 11: 50.0" in section  # the chance level from results.json

    with open(demo_report.write_report(dirs[11], seeds=2, data_seed=11)) as f:
        report = f.read()
    assert "## AVA: D3D backbone against S3D-G backbone" in report
    assert "| 11 |" in report and "| pooled |" in report


def test_reports_name_a_missing_evaluation_and_skip_ava_when_it_did_not_run(tmp_path):
    folder = str(tmp_path / "data_5")
    _fake_ava_dir(folder, 5, 1, wrong_a=1)
    os.remove(os.path.join(demo_ava.eval_dir(folder, "d3d", 0), "detections.csv"))
    lines = demo_ava.report_section(folder, 1, 5)
    assert any("missing AVA results" in x and "eval/d3d/detections.csv" in x for x in lines)
    assert demo_ava.report_section(str(tmp_path / "other"), 1, 5) == []
    assert demo_ava.protocol_section({6: str(tmp_path / "other")}, 1) == []
