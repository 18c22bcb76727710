"""The built-in motion dataset: deterministic, balanced, and classified by motion alone."""
import csv
import subprocess
import sys

import numpy as np
import pytest

from d3d_tf.data import flow as flow_lib
from d3d_tf.data import synthetic, video

SMALL = synthetic.SyntheticConfig(videos_per_class=4, num_frames=8, size=48)


def test_same_seed_same_frames_other_seed_other_frames():
    a = synthetic.render_video(SMALL, 2, 1)
    b = synthetic.render_video(SMALL, 2, 1)
    assert a.shape == (8, 48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    other = synthetic.render_video(synthetic.SyntheticConfig(
        videos_per_class=4, num_frames=8, size=48, seed=1), 2, 1)
    assert np.abs(a.astype(int) - other).mean() > 5
    assert np.abs(a.astype(int) - synthetic.render_video(SMALL, 2, 2)).mean() > 5


@pytest.mark.parametrize("a,b", [("move_left", "move_right"), ("move_up", "move_down"),
                                 ("rotate_clockwise", "rotate_counterclockwise"),
                                 ("grow", "shrink")])
def test_class_is_motion_only_a_video_backwards_is_its_twin(a, b):
    """Same appearance draws: a class's frames reversed are exactly its twin's frames, so
    the set of frames (everything a single frame can show) is the same for both classes."""
    cfg = synthetic.SyntheticConfig(num_frames=9, size=48, background_drift=0.0)
    va = synthetic.render_motion(cfg, a, np.random.default_rng(11))
    vb = synthetic.render_motion(cfg, b, np.random.default_rng(11))
    np.testing.assert_array_equal(va[::-1], vb)
    assert np.abs(va.astype(int) - vb).mean() > 1  # but the videos differ: motion is the class


def test_motion_is_visible_in_flow():
    cfg = synthetic.SyntheticConfig(num_frames=6, size=64, background_drift=0.0)
    mean_dx = {}
    for name in ("move_left", "move_right"):
        frames = synthetic.render_motion(cfg, name, np.random.default_rng(3))
        flow = flow_lib.compute_flow(frames, method="farneback")
        moving = np.abs(flow[0]).sum(-1) > 0.5  # the object, not the still background
        assert moving.mean() > 0.02
        mean_dx[name] = float(flow[..., 0][:, moving].mean())
    assert mean_dx["move_left"] < -0.5 and mean_dx["move_right"] > 0.5


def test_cli_writes_balanced_manifest_and_readable_videos(tmp_path):
    out = tmp_path / "synth"
    subprocess.run([sys.executable, "-m", "d3d_tf.synthetic", f"--out_dir={out}",
                    "--classes=3", "--videos_per_class=4", "--frames=6", "--size=32",
                    "--workers=1"], check=True, timeout=300, capture_output=True)
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label_name", "split"]
    labels = (out / "labels.txt").read_text().split()
    assert labels == list(synthetic.CLASS_NAMES[:3])
    for name in labels:
        mine = [r for r in rows if r["label_name"] == name]
        assert len(mine) == 4
        assert sorted(r["split"] for r in mine) == ["test", "train", "train", "train"]
    frames = video.read_video(str(out / rows[0]["path"]))
    assert frames.shape == (6, 32, 32, 3)
    again = synthetic.render_video(synthetic.SyntheticConfig(
        num_classes=3, videos_per_class=4, num_frames=6, size=32), 0, 0)
    assert np.abs(frames.astype(int) - again).mean() < 6  # the mp4 holds the rendered frames


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.SyntheticConfig(num_classes=99)
    out = subprocess.run([sys.executable, "-m", "d3d_tf.synthetic"], check=False,
                         capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "--out_dir is required" in out.stderr
