"""The synthetic classes are motion only: a video played backwards is its twin class."""
import csv

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


def test_shape_classes_fix_the_shape_and_name_the_classes(tmp_path):
    cfg = synthetic.SyntheticConfig(num_classes=2, shape_classes=2, videos_per_class=3,
                                    num_frames=4, size=32, test_fraction=0.34)
    assert cfg.class_names == ("ellipse_move_left", "ellipse_move_right",
                               "rectangle_move_left", "rectangle_move_right")
    assert cfg.class_attributes(3) == ("move_right", 1)
    # The shape is the class's; with random shapes it is the stream's, recorded in the manifest.
    assert [synthetic.render_video_and_shape(cfg, 2, i)[1] for i in range(3)] == [1, 1, 1]
    free = synthetic.SyntheticConfig(num_classes=2, videos_per_class=12, num_frames=2, size=32)
    shapes = {synthetic.render_video_and_shape(free, c, i)[1] for c in range(2) for i in range(12)}
    assert shapes == {0, 1, 2, 3}
    manifest = synthetic.generate_dataset(cfg, str(tmp_path))
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["shape"] for r in rows} == {"ellipse", "rectangle"}
    assert all(r["label_name"].startswith(r["shape"] + "_") for r in rows)
    labels = (tmp_path / "labels.txt").read_text().split()
    assert labels == list(cfg.class_names)


def test_given_shape_is_drawn():
    masks = [synthetic._shape_mask(np.random.default_rng(5), 33, kind)[0] for kind in range(4)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(masks[a] - masks[b]).sum() > 20, (a, b)  # pixels of a 33x33 mask
    cfg = synthetic.SyntheticConfig(num_classes=1, num_frames=3, size=48)
    ellipse = synthetic.render_motion(cfg, "move_left", np.random.default_rng(5), shape=0)
    star = synthetic.render_motion(cfg, "move_left", np.random.default_rng(5), shape=3)
    assert np.abs(ellipse.astype(int) - star).max() > 50
    with pytest.raises(ValueError, match="shape_classes"):
        synthetic.SyntheticConfig(shape_classes=5)
