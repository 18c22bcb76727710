"""prepare: videos -> shards that read back right; bad videos skipped; interruption-safe."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from d3d_tf.data import datasets, pipeline, prepare_lib, records, video
from d3d_tf.data import flow as flow_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moving_square(n, size, seed):
    """uint8 [n,size,size,3]: a bright square moving 1 px right per frame on a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    frames = np.empty((n, size, size, 3), np.uint8)
    x0, y0 = rng.integers(2, size // 3, 2)
    for t in range(n):
        img = np.stack([x * 4, y * 4, np.full_like(x, 60)], -1)
        img[y0:y0 + 8, x0 + t:x0 + t + 8] = 230
        frames[t] = np.clip(img, 0, 255)
    return frames


def make_tree(root, per_class=2, n=8, size=32, classes=("jump", "run")):
    for c, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            video.write_video(str(root / name / f"{name}{i}.mp4"),
                              moving_square(n, size, seed=10 * c + i), fps=10.0)
    return root


def test_prepare_reads_back_and_skips_bad_video(tmp_path):
    root = make_tree(tmp_path / "videos")
    (root / "run" / "broken.mp4").write_bytes(b"\x00\x00\x00 not a video" * 50)
    entries, labels = datasets.read_folder_tree(str(root))
    out = tmp_path / "out"
    config = prepare_lib.PrepareConfig(str(out), flow="farneback", num_shards=2, workers=2,
                                       jpeg_quality=95)
    summary = prepare_lib.prepare(entries, labels, config)
    assert summary.videos_written == 4 and summary.frames == 32 and summary.flow_pairs == 28
    assert [s["video_id"] for s in summary.skipped] == ["run/broken"]
    assert "broken.mp4" in summary.skipped[0]["reason"]
    assert "skipped run/broken" in summary.format()
    assert sorted(os.listdir(out)) == [".prepare", "labels.txt", "train-00000-of-00002.tfrecord",
                                       "train-00001-of-00002.tfrecord", "train_info.json"]
    assert (out / "labels.txt").read_text() == "jump\nrun\n"
    info = json.loads((out / "train_info.json").read_text())
    assert info["label_counts"] == {"jump": 2, "run": 2} and info["settings"]["flow"] == "farneback"
    assert summary.bytes == sum(os.path.getsize(p) for p in glob.glob(str(out / "train-*")))

    # Stored flow is exactly the quantized flow of the decoded frames.
    by_id = {}
    for path in sorted(glob.glob(str(out / "train-*.tfrecord"))):
        for rec in records.read_records(path):
            ex = records.decode_example(rec)
            by_id[ex["video_id"]] = ex
    assert sorted(by_id) == ["jump/jump0", "jump/jump1", "run/run0", "run/run1"]
    ex = by_id["run/run1"]
    frames = video.read_video(str(root / "run" / "run1.mp4"))
    assert ex["label"] == 1 and ex["label_name"] == "run" and ex["fps"] == pytest.approx(10.0)
    assert ex["rgb"].shape == (8, 32, 32, 3) and np.abs(ex["rgb"].astype(int) - frames).mean() < 3
    expected = flow_lib.quantize_flow(flow_lib.compute_flow(frames, "farneback"))
    np.testing.assert_array_equal(ex["flow_q"], expected)
    assert ex["flow_q"][..., 0].max() > 128 + 5  # the square moves right: positive x flow

    # The pipeline reads the prepared set: every video once, labels from labels.txt.
    cfg = pipeline.PipelineConfig(str(out / "train-*.tfrecord"), num_frames=4, crop_size=24,
                                  training=False, batch_size=3, modalities=("rgb", "flow"))
    got = {}
    for batch in pipeline.make_dataset(cfg):
        assert batch["rgb"].shape[1:] == (4, 24, 24, 3)
        assert batch["flow"].shape[1:] == (4, 24, 24, 2)
        got.update(zip([v.decode() for v in batch["video_id"].numpy()],
                       batch["label"].numpy().tolist()))
    assert got == {"jump/jump0": 0, "jump/jump1": 0, "run/run0": 1, "run/run1": 1}

    # A rerun reuses every shard; other settings in the same folder are refused.
    again = prepare_lib.prepare(entries, labels, config)
    assert again.shards_reused == 2 and again.shards_written == 0
    assert again.videos_written == 4 and len(again.skipped) == 1
    config.jpeg_quality = 80
    with pytest.raises(prepare_lib.PrepareError, match="other settings"):
        prepare_lib.prepare(entries, labels, config)


def test_unlabeled_list_without_flow_and_resize(tmp_path):
    make_tree(tmp_path / "v", per_class=1, n=6, size=40, classes=("a",))
    (tmp_path / "list.txt").write_text("v/a/a0.mp4\nv/a/missing.mp4\n")
    entries, labels = datasets.read_file_list(str(tmp_path / "list.txt"))
    config = prepare_lib.PrepareConfig(str(tmp_path / "out"), flow="none", num_shards=3,
                                       workers=1, short_side=20, max_frames=4, fps=5.0)
    summary = prepare_lib.prepare(entries, labels, config)
    assert summary.videos_written == 1 and summary.flow_pairs == 0
    assert "file not found" in summary.skipped[0]["reason"]
    assert not os.path.exists(tmp_path / "out" / "labels.txt")  # no labels to write
    shards = sorted(glob.glob(str(tmp_path / "out" / "train-*-of-00003.tfrecord")))
    assert len(shards) == 3  # empty shards are written too, so resumption knows they are done
    recs = [records.decode_example(r) for s in shards for r in records.read_records(s)]
    assert len(recs) == 1 and recs[0]["label"] == -1 and recs[0]["video_id"] == "v/a/a0"
    # 6 frames at 10 fps resampled to 5 fps -> 3 frames; short side 40 -> 20.
    assert recs[0]["rgb"].shape == (3, 20, 20, 3) and recs[0]["fps"] == pytest.approx(5.0)
    with pytest.raises(prepare_lib.PrepareError, match="no videos with split 'test'"):
        prepare_lib.prepare(entries, labels, prepare_lib.PrepareConfig(str(tmp_path), split="test"))


def _prepare_cmd(video_dir, out_dir):
    return [sys.executable, "-m", "d3d_tf.prepare", "--format=folder", f"--video_dir={video_dir}",
            f"--out_dir={out_dir}", "--flow=tvl1", "--num_shards=8", "--workers=2"]


@pytest.mark.slow
def test_interrupted_prepare_resumes_without_duplicates(tmp_path):
    root = make_tree(tmp_path / "videos", per_class=4, n=12, size=48)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(_prepare_cmd(root, out), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not glob.glob(str(out / "train-*.tfrecord")):
            assert proc.poll() is None, "prepare exited before writing a shard"
            assert time.monotonic() < deadline, "no shard after 120 s"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the process group: prepare and its workers
    finally:
        proc.wait()
    finished = glob.glob(str(out / "train-*.tfrecord"))
    assert 1 <= len(finished) < 8, "the run was not interrupted mid-way"

    done = subprocess.run(_prepare_cmd(root, out), env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "8 videos written, 0 skipped" in done.stdout
    assert f"({len(finished)} reused from an earlier run)" in done.stdout
    assert "[prepare train]" in done.stderr and "ETA" in done.stderr  # progress without a TTY
    shards = sorted(glob.glob(str(out / "train-*.tfrecord")))
    assert len(shards) == 8 and not glob.glob(str(out / ".*.partial"))
    ids = [records.decode_example(r)["video_id"] for s in shards for r in records.read_records(s)]
    assert sorted(ids) == sorted(f"{c}/{c}{i}" for c in ("jump", "run") for i in range(4))
    assert records.verify_shards(str(out / "train-*.tfrecord"), parse=True) == 8


@pytest.mark.slow
def test_synthetic_manifest_end_to_end(tmp_path):
    from d3d_tf.data import synthetic
    cfg = synthetic.SyntheticConfig(num_classes=2, videos_per_class=2, num_frames=6, size=32,
                                    test_fraction=0.5)
    manifest = synthetic.generate_dataset(cfg, str(tmp_path / "syn"))
    entries, labels = datasets.read_manifest(manifest)
    assert labels == list(cfg.class_names)
    for split in ("train", "test"):
        summary = prepare_lib.prepare(entries, labels, prepare_lib.PrepareConfig(
            str(tmp_path / "rec"), split=split, flow="farneback", num_shards=1, workers=1))
        assert summary.videos_written == 2 and not summary.skipped
    assert (tmp_path / "rec" / "labels.txt").read_text().split() == labels
    ds = pipeline.make_dataset(pipeline.PipelineConfig(
        str(tmp_path / "rec" / "test-*.tfrecord"), num_frames=4, crop_size=32, training=False,
        batch_size=4, modalities=("rgb", "flow")))
    batch = next(iter(ds))
    want = {e.video_id: labels.index(e.label_name) for e in entries if e.split == "test"}
    got = dict(zip([v.decode() for v in batch["video_id"].numpy()], batch["label"].numpy()))
    assert got == want and batch["flow"].shape == (2, 4, 32, 32, 2)
    assert np.abs(batch["flow"].numpy()).max() > 0.01  # the synthetic objects move
