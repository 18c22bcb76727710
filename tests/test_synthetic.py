"""Tests for the synthetic motion dataset: determinism, files, and 'class = motion only'."""
import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from d3d_tf.data import flow, synthetic, video

SMALL = synthetic.SyntheticConfig(num_classes=8, videos_per_class=3, num_frames=6, size=32,
                                  test_fraction=1 / 3, seed=3)


def test_render_is_deterministic_and_seeded():
    a = synthetic.render_video(SMALL, 2, 1)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic.render_video(SMALL, 2, 1))
    other_seed = synthetic.SyntheticConfig(**{**SMALL.__dict__, "seed": 4})
    assert not np.array_equal(a, synthetic.render_video(other_seed, 2, 1))
    assert not np.array_equal(a, synthetic.render_video(SMALL, 2, 2))
    # Frames change over time (something moves).
    assert np.abs(a[0].astype(int) - a[-1]).mean() > 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.SyntheticConfig(num_classes=len(synthetic.CLASS_NAMES) + 1)
    with pytest.raises(ValueError, match="test_fraction"):
        synthetic.SyntheticConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="speed"):
        synthetic.SyntheticConfig(speed=(2.0, 1.0))
    with pytest.raises(ValueError, match="background_contrast"):
        synthetic.SyntheticConfig(background_contrast=(-1.0, 5.0))
    with pytest.raises(ValueError, match="texture_scale"):
        synthetic.SyntheticConfig(texture_scale=0.0)
    with pytest.raises(ValueError, match="direction_jitter"):
        synthetic.SyntheticConfig(direction_jitter=45.0)
    assert synthetic.SyntheticConfig(num_classes=3).class_names == synthetic.CLASS_NAMES[:3]


def test_direction_jitter_turns_translations_only():
    # 30 degrees counter-clockwise on screen: a rightward move also goes up (y points down).
    dx, dy, _, _ = synthetic._object_pose("move_right", 10.0, 1.0, 0.0, 0.0, jitter=30.0)
    np.testing.assert_allclose([dx, dy], [10 * np.cos(np.pi / 6), -10 * np.sin(np.pi / 6)])
    dx, dy, _, _ = synthetic._object_pose("move_down", 10.0, 1.0, 0.0, 0.0, jitter=30.0)
    np.testing.assert_allclose([dx, dy], [10 * np.sin(np.pi / 6), 10 * np.cos(np.pi / 6)])
    assert synthetic._object_pose("grow", 2.0, 1.0, 5.0, 0.5, jitter=30.0) == (0, 0, 0, 1.0)
    # Same appearance (the jitter is the last random draw): with an odd frame count the
    # middle frame (dt = 0) is identical; the other frames differ for a translation class.
    base = synthetic.SyntheticConfig(**{**SMALL.__dict__, "num_frames": 5})
    jittered = synthetic.SyntheticConfig(**{**base.__dict__, "direction_jitter": 40.0})
    a, b = synthetic.render_video(base, 1, 0), synthetic.render_video(jittered, 1, 0)
    np.testing.assert_array_equal(a[2], b[2])
    assert np.abs(a[0].astype(int) - b[0]).mean() > 0.5
    # Rotation classes do not translate, so jitter leaves them unchanged.
    np.testing.assert_array_equal(synthetic.render_video(base, 4, 0),
                                  synthetic.render_video(jittered, 4, 0))


def test_without_wrap_the_middle_frame_holds_the_whole_object():
    # A plain background: a border pixel differs from it only where the object covers it.
    plain = dict(SMALL.__dict__, num_frames=5, background_contrast=(0.0, 0.0),
                 background_drift=0.0, object_size=(0.5, 0.7))
    torus, inside = (synthetic.SyntheticConfig(**{**plain, "wrap": w}) for w in (True, False))

    def touches_border(frame):
        border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(int)
        return np.abs(border - border[0]).max() > 0

    videos = [(c, i) for c in range(8) for i in range(3)]
    assert sum(touches_border(synthetic.render_video(torus, c, i)[2]) for c, i in videos) > 5
    for c, i in videos:
        frames = synthetic.render_video(inside, c, i)
        assert not touches_border(frames[2]), (c, i)
        assert np.abs(frames[2].astype(int) - frames[2, 0, 0]).max() > 30  # the object is there
    with pytest.raises(ValueError, match="without wrap the object must fit"):
        synthetic.SyntheticConfig(size=32, object_size=(0.5, 0.95), wrap=False)


def test_a_fixed_background_colour_changes_nothing_else():
    plain = dict(SMALL.__dict__, num_frames=3, background_contrast=(0.0, 0.0),
                 background_drift=0.0)
    random_bg = synthetic.SyntheticConfig(**plain)
    grey = synthetic.SyntheticConfig(**{**plain, "background_color": (128, 128, 128)})
    for c, i in ((0, 0), (5, 1)):
        a, b = synthetic.render_video(random_bg, c, i), synthetic.render_video(grey, c, i)
        assert (b[:, 0, 0] == 128).all() and not (a[:, 0, 0] == 128).all()
        # The same object in the same place: only the background's pixels differ.
        changed = (a != b).any(-1)
        covered = (b != 128).any(-1)
        assert changed.mean() > 0.2 and (changed | covered).all()
    with pytest.raises(ValueError, match="background_color"):
        synthetic.SyntheticConfig(background_color=(0, 0, 300))


def test_generate_dataset_files_and_manifest(tmp_path):
    manifest = synthetic.generate_dataset(SMALL, str(tmp_path), num_workers=1)
    assert manifest == str(tmp_path / "manifest.csv")
    lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert lines[0] == "path,label_name,split,shape"
    rows = list(csv.DictReader(lines))
    assert len(rows) == 8 * 3
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    assert labels == list(synthetic.CLASS_NAMES)
    for name in labels:  # balanced classes, balanced deterministic split (1 of 3 is test)
        mine = [r for r in rows if r["label_name"] == name]
        assert [r["split"] for r in mine] == ["train", "train", "test"]
    for r in rows:
        path = tmp_path / r["path"]  # relative to the manifest's folder
        assert path.is_file() and r["path"].endswith(".mp4")
    first = rows[0]
    frames = video.read_video(tmp_path / first["path"])
    rendered = synthetic.render_video(SMALL, labels.index(first["label_name"]), 0)
    assert frames.shape == rendered.shape
    assert np.abs(frames.astype(int) - rendered).mean() < 6.0  # H.264 at CRF 17, 4:2:0
    # Parallel generation writes the same frames.
    par = tmp_path / "par"
    synthetic.generate_dataset(SMALL, str(par), num_workers=2)
    assert (par / "manifest.csv").read_text() == "\n".join(lines) + "\n"
    np.testing.assert_array_equal(video.read_video(par / first["path"]), frames)
    for r in rows:  # the encoder is deterministic too: byte-identical files
        assert (par / r["path"]).read_bytes() == (tmp_path / r["path"]).read_bytes(), r["path"]


def test_cli_writes_requested_classes(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "d3d_tf.synthetic", f"--out_dir={out}", "--classes=2",
                    "--videos_per_class=2", "--frames=3", "--size=24", "--test_fraction=0.5"],
                   check=True, capture_output=True)
    assert (out / "labels.txt").read_text().splitlines() == list(synthetic.CLASS_NAMES[:2])
    rows = list(csv.DictReader((out / "manifest.csv").read_text().splitlines()))
    assert [(r["label_name"], r["split"]) for r in rows] == [
        ("move_left", "train"), ("move_left", "test"), ("move_right", "train"),
        ("move_right", "test")]


@pytest.mark.slow
def test_cli_plain_background_and_bad_range(tmp_path):
    common = [sys.executable, "-m", "d3d_tf.synthetic", "--classes=1", "--videos_per_class=1",
              "--frames=2", "--size=32", "--background_drift=0"]
    plain, textured = tmp_path / "plain", tmp_path / "textured"
    subprocess.run([*common, f"--out_dir={plain}", "--background_contrast=0,0",
                    "--texture_scale=2"], check=True, capture_output=True)
    subprocess.run([*common, f"--out_dir={textured}"], check=True, capture_output=True)
    path = "move_left/move_left_000.mp4"
    # Same seed, same object and background colour; the textured background varies more.
    assert video.read_video(str(textured / path)).std() > video.read_video(str(plain / path)).std()
    bad = subprocess.run([*common, f"--out_dir={tmp_path / 'bad'}", "--speed=1"],
                         check=False, capture_output=True, text=True)
    assert bad.returncode != 0 and "--speed takes two numbers" in bad.stderr
    # --nowrap and --object_size reach the config: together they are refused.
    bad = subprocess.run([*common, f"--out_dir={tmp_path / 'bad'}", "--nowrap",
                          "--object_size=0.5,0.99"], check=False, capture_output=True, text=True)
    assert bad.returncode != 0 and "without wrap the object must fit" in bad.stderr
    bad = subprocess.run([*common, f"--out_dir={tmp_path / 'bad'}", "--background_color=1,2"],
                         check=False, capture_output=True, text=True)
    assert bad.returncode != 0 and "--background_color takes three numbers" in bad.stderr


@pytest.mark.slow
def test_demo_data_flagfile(tmp_path):
    """configs/demo/synthetic.flags parses and selects the 4 translation classes."""
    flagfile = os.path.join(os.path.dirname(__file__), "..", "configs", "demo", "synthetic.flags")
    subprocess.run([sys.executable, "-m", "d3d_tf.synthetic", f"--flagfile={flagfile}",
                    f"--out_dir={tmp_path}", "--videos_per_class=14", "--frames=3", "--size=32"],
                   check=True, capture_output=True)
    assert (tmp_path / "labels.txt").read_text().split() == list(synthetic.CLASS_NAMES[:4])
    with open(tmp_path / "manifest.csv") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    # --test_fraction=0.7143: of 14 videos a class the last 10 test (of the demo's 140, 100).
    assert splits == (["train"] * 4 + ["test"] * 10) * 4


def _nearest_centroid_loo_accuracy(features, labels):
    """Leave-one-out accuracy of a nearest-centroid classifier on standardized features."""
    x = np.asarray(features, np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    correct = 0
    for k in range(len(x)):
        keep = np.arange(len(x)) != k
        centroids = np.stack([x[keep & (labels == c)].mean(0) for c in np.unique(labels)])
        correct += np.argmin(((centroids - x[k]) ** 2).sum(1)) == labels[k]
    return correct / len(x)


def test_class_is_not_visible_in_a_single_frame_but_in_flow():
    """Appearance of one frame carries no class; the motion does."""
    config = synthetic.SyntheticConfig(videos_per_class=10, num_frames=8, size=48, seed=0)
    rng = np.random.default_rng(0)
    frame_features, rel_flow, labels = [], [], []
    for c in range(config.num_classes):
        for i in range(config.videos_per_class):
            v = synthetic.render_video(config, c, i)
            f = v[rng.integers(len(v))].astype(np.float32)  # one frame, unknown time
            gray = f.mean(-1)
            coarse = cv2.resize(gray, (4, 4), interpolation=cv2.INTER_AREA).ravel()
            frame_features.append(np.concatenate([f.mean((0, 1)), [gray.std()], coarse]))
            fl = flow.compute_flow(v[3:5], method="farneback")[0]
            rel = fl - np.median(fl.reshape(-1, 2), axis=0)  # object motion vs background
            rel_flow.append(rel.mean((0, 1)))
            labels.append(c)
    labels = np.array(labels)
    chance = 1 / config.num_classes
    # Mean colour, contrast and a coarse 4x4 layout of one frame: chance level.
    assert _nearest_centroid_loo_accuracy(frame_features, labels) < 2 * chance
    # Mean relative flow separates every translation direction, video by video.
    rel_flow = np.array(rel_flow)
    for name, axis, sign in (("move_left", 0, -1), ("move_right", 0, 1), ("move_up", 1, -1),
                             ("move_down", 1, 1)):
        values = rel_flow[labels == synthetic.CLASS_NAMES.index(name), axis] * sign
        assert (values > 0.1).all(), name


def _curl_div(rel):
    """(curl, divergence) of a [H,W,2] flow averaged over its moving pixels."""
    du_dy, du_dx = np.gradient(rel[..., 0])
    dv_dy, dv_dx = np.gradient(rel[..., 1])
    moving = np.hypot(rel[..., 0], rel[..., 1]) > 0.25
    return (dv_dx - du_dy)[moving].mean(), (du_dx + dv_dy)[moving].mean()


def test_rotation_and_scaling_show_in_tvl1_flow():
    config = synthetic.SyntheticConfig(videos_per_class=6, num_frames=6, size=64, seed=0)
    stats = {}
    for name in ("rotate_clockwise", "rotate_counterclockwise", "grow", "shrink"):
        c = synthetic.CLASS_NAMES.index(name)
        values = []
        for i in range(config.videos_per_class):
            fl = flow.compute_flow(synthetic.render_video(config, c, i)[2:4])[0]
            values.append(_curl_div(fl - np.median(fl.reshape(-1, 2), axis=0)))
        stats[name] = np.mean(values, axis=0)
    # Image y points down, so clockwise on screen has positive dv/dx - du/dy.
    assert stats["rotate_clockwise"][0] > 0 > stats["rotate_counterclockwise"][0]
    assert stats["grow"][1] > 0 > stats["shrink"][1]
