"""What D3D saves over the two-stream model (`python -m d3d_tf.benchmark --parts=two_stream`).

No speed is asserted: the benchmark measures, the tests check what it measures.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from d3d_tf.benchmark import data as throughput
from d3d_tf.benchmark import two_stream
from d3d_tf.export import predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    """10 synthetic frames of 40x40 px (the project's generator), as mp4."""
    path = str(tmp_path_factory.mktemp("two_stream") / "tiny.mp4")
    return two_stream.write_synthetic_video(path, num_frames=10, size=40)


def tiny_config(video, **kw):
    return two_stream.TwoStreamConfig(video=video, num_frames=4, crop_size=32, num_clips=2,
                                      depth_multiplier=0.25, num_classes=5, **kw)


def test_two_stream_times_every_stage_of_both_pipelines(tiny_video):
    rows = two_stream.run_two_stream_benchmark(tiny_config(tiny_video), repeats=1)
    two, d3d = rows
    assert [r["pipeline"] for r in rows] == ["two-stream", "D3D"]
    # The two-stream model runs everything D3D runs, plus TV-L1, the flow network and the
    # average of the two streams.
    assert list(two["stages"]) == ["decode", "tvl1_flow", "flow_s3dg", "rgb_s3dg", "average"]
    assert list(d3d["stages"]) == ["decode", "rgb_s3dg"]
    for row in rows:
        assert all(s > 0 for s in row["stages"].values()), row["stages"]
        # One round: the total is the sum of its stages.
        assert row["total_s"] == pytest.approx(sum(row["stages"].values()))
        assert 0 <= row["top1"] < 5
    assert two["x_d3d"] == pytest.approx(two["total_s"] / d3d["total_s"])
    assert d3d["x_d3d"] == 1.0
    setup = two["setup"]
    assert (setup["video"], setup["video_frames"], setup["video_width"]) == (tiny_video, 10, 40)
    assert (setup["num_clips"], setup["num_frames"], setup["crop_size"]) == (2, 4, 32)
    assert setup["rgb_model"] == setup["flow_model"] == "random s3dg d0.25"
    json.dumps(rows)  # the --json output

    table = two_stream.format_table(rows).splitlines()
    assert table[1].split() == ["pipeline", "decode", "TV-L1", "flow", "flow", "S3D-G", "RGB",
                                "S3D-G", "average", "total", "x", "D3D"]
    cells = {line.split()[0]: line.split()[1:] for line in table[3:5]}
    assert len(cells["two-stream"]) == len(cells["D3D"]) == 7
    assert "-" not in cells["two-stream"]
    # D3D: decode, no TV-L1, no flow network, RGB S3D-G, no average, total, ratio 1.00
    assert [c == "-" for c in cells["D3D"]] == [False, True, True, False, True, False, False]
    assert cells["D3D"][-1] == "1.00" and cells["two-stream"][-1] == f"{two['x_d3d']:.2f}"
    assert table[-1].startswith(f"two-stream / D3D: {two['x_d3d']:.2f}x the time per video")


def test_two_stream_decode_is_the_predictors(tmp_path, tiny_video):
    """The two-stream decode keeps every frame, and its clips are `predictor.video_clips`'s
    (resize, centre crop, evenly spaced clips, looped short videos)."""
    wide = str(tmp_path / "wide.mp4")
    from d3d_tf.data import video

    video.write_video(wide, np.random.default_rng(0).integers(0, 256, (9, 48, 64, 3), np.uint8))
    for path, frames_per_clip, clips in ((wide, 4, 3), (tiny_video, 4, 1), (tiny_video, 16, 2)):
        shape = predictor.ClipShape(frames_per_clip, 32, 32)
        config = predictor.PredictConfig(num_clips=clips)
        frames, idx = two_stream.decode_with_next_frames(path, shape, config)
        want = predictor.video_clips(path, shape, config)
        assert frames.shape[1:] == (32, 32, 3) and idx.shape == (clips, frames_per_clip)
        np.testing.assert_array_equal(frames[idx], want)


def test_clip_flow_is_tvl1_of_the_pairs_the_pipeline_uses():
    # A texture moving 2 px per frame to the left: flow x = -2 px = -0.1 after / FLOW_BOUND.
    frames, _ = throughput.synthetic_video(5, 32, 32, np.random.default_rng(0))
    flow = two_stream.clip_flow(frames, np.array([[1, 2, 3, 4]]))
    assert flow.shape == (1, 4, 32, 32, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() <= 1.0
    np.testing.assert_allclose(flow[0, :, 8:24, 8:24, 0].mean(axis=(1, 2)), -0.1, atol=0.01)
    np.testing.assert_allclose(flow[0, :, 8:24, 8:24, 1].mean(axis=(1, 2)), 0.0, atol=0.01)
    # The last frame (4 of N=5) takes the pair arriving at it, min(4, N-2) = 3: frame 3's.
    np.testing.assert_array_equal(flow[0, 3], flow[0, 2])
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        two_stream.clip_flow(frames[:1], np.zeros((1, 4), int))


def test_two_stream_refuses_a_missing_video_and_a_wrong_modality(tmp_path, tiny_video):
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match=f"--video={re.escape(missing)}: no such file"):
        two_stream.run_two_stream_benchmark(tiny_config(missing))
    from d3d_tf import models
    from d3d_tf.models import saving

    net = models.build_classifier("s3dg", num_classes=5, input_shape=(4, 32, 32, 3),
                                  depth_multiplier=0.25)
    rgb_dir = str(tmp_path / "rgb_model")
    saving.save_model_dir(rgb_dir, net, saving.spec_for(net, name="s3dg"))
    with pytest.raises(ValueError, match="a rgb model where the flow model is expected"):
        two_stream.run_two_stream_benchmark(tiny_config(tiny_video, flow_model_dir=rgb_dir))


@pytest.mark.slow  # one CLI run (TensorFlow import)
def test_benchmark_cli_two_stream_part(tmp_path, tiny_video):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "d3d_tf.benchmark", "--parts=two_stream", "--smoke",
         f"--video={tiny_video}", f"--json={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## two_stream" in done.stdout
    assert re.search(r"^two-stream +(\d+\.\d{3} +){6}\d+\.\d\d$", done.stdout,
                     re.MULTILINE), done.stdout
    assert "two-stream / D3D: " in done.stdout
    rows = json.loads(out.read_text())["two_stream"]
    assert [r["pipeline"] for r in rows] == ["two-stream", "D3D"]
    assert rows[0]["setup"]["num_frames"] == 8 and rows[0]["setup"]["video"] == tiny_video
