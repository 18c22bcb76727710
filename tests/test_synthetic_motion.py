"""The synthetic classes are motion only: a video played backwards is its twin class."""
import numpy as np
import pytest

from d3d_tf.data import flow as flow_lib
from d3d_tf.data import synthetic


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
