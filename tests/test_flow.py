"""Tests for d3d_tf.data.flow: TV-L1 accuracy, encodings, metrics and colours."""
import cv2
import numpy as np
import pytest

from d3d_tf.data import flow


def textured_pair(dx, dy, size=64, seed=0):
    """Smoothed random noise (uint8 [H,W]) and the same texture translated by (dx, dy) px."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((size + 40, size + 40)).astype(np.float32), (0, 0), 2)
    big = (big - big.min()) / (big.max() - big.min()) * 255
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(big, shift, big.shape[::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REFLECT)
    crop = np.s_[20:20 + size, 20:20 + size]
    return (np.clip(big[crop], 0, 255).round().astype(np.uint8),
            np.clip(moved[crop], 0, 255).round().astype(np.uint8))


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_flow_recovers_a_translation_with_its_sign_and_size(method):
    """DIS (OpenCV's, not the papers') has TV-L1's conventions: (x, y) pixels, prev to next."""
    fn = {"tvl1": flow.tvl1_flow, "dis": flow.dis_flow}[method]
    for dx, dy in ((2.5, -1.5), (-3.0, 2.0)):
        a, b = textured_pair(dx, dy)
        f = fn(a, b)
        assert f.shape == (64, 64, 2) and f.dtype == np.float32
        interior = f[12:-12, 12:-12]
        target = np.broadcast_to(np.float32([dx, dy]), interior.shape)
        assert flow.endpoint_error(interior, target) < 0.5, (dx, dy)
        if method == "dis":
            # Float input on the [0, 255] scale gives the same flow as uint8.
            np.testing.assert_allclose(fn(a.astype(np.float32), b), f, atol=1e-5)


@pytest.mark.parametrize("method, tol", [("tvl1", 0.5), ("farneback", 1.0), ("dis", 0.5)])
def test_compute_flow_on_rgb_video(method, tol):
    rgb = []
    for i in range(3):
        a, _ = textured_pair(0, 0, size=48)
        rgb.append(np.roll(np.repeat(a[..., None], 3, -1), 2 * i, axis=1))  # 2 px/frame right
    frames = np.stack(rgb)
    f = flow.compute_flow(frames, method=method)
    assert f.shape == (2, 48, 48, 2) and f.dtype == np.float32
    interior = f[:, 10:-10, 10:-10]
    target = np.broadcast_to(np.float32([2, 0]), interior.shape)
    assert flow.endpoint_error(interior, target) < tol


def test_compute_flow_rejects_bad_input():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown flow method"):
        flow.compute_flow(frames, method="raft")
    with pytest.raises(ValueError, match="at least 2"):
        flow.compute_flow(frames[:1])
    with pytest.raises(ValueError, match="same shape"):
        flow.tvl1_flow(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_quantize_round_trip_within_one_step():
    rng = np.random.default_rng(0)
    f = rng.uniform(-25, 25, (4, 16, 16, 2)).astype(np.float32)
    q = flow.quantize_flow(f)
    assert q.dtype == np.uint8 and q.shape == f.shape
    assert q.min() == 0 and q.max() == 255  # values beyond +-20 px are clipped
    back = flow.dequantize_flow(q)
    step = 2 * flow.FLOW_BOUND / 255
    clipped = np.clip(f, -flow.FLOW_BOUND, flow.FLOW_BOUND)
    assert back.dtype == np.float32
    assert np.abs(back - clipped).max() <= step / 2 + 1e-5
    # A different bound is honoured both ways.
    assert np.abs(flow.dequantize_flow(flow.quantize_flow(f, 5.0), 5.0)
                  - np.clip(f, -5, 5)).max() <= 5.0 / 255 + 1e-5


def test_polar_round_trip_and_values():
    rng = np.random.default_rng(1)
    f = rng.normal(0, 5, (2, 8, 8, 2)).astype(np.float32)
    f[0, 0, 0] = 0.0
    polar = flow.flow_to_polar(f)
    assert polar.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(polar[..., 0], np.linalg.norm(f, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(polar[..., 1] ** 2 + polar[..., 2] ** 2, 1.0, rtol=1e-5)
    np.testing.assert_allclose(flow.polar_to_flow(polar), f, atol=1e-5)
    # Straight down (y > 0) is theta = 90 degrees: sin = 1, cos = 0.
    np.testing.assert_allclose(flow.flow_to_polar(np.float32([0, 3])), [3, 1, 0], atol=1e-6)


def test_endpoint_error():
    a = np.zeros((2, 3, 4, 4, 2), np.float32)
    b = a.copy()
    b[..., 0] = 3.0
    b[..., 1] = 4.0
    assert flow.endpoint_error(a, b) == pytest.approx(5.0)
    assert flow.endpoint_error(a[0, 0], b[0, 0]) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        flow.endpoint_error(a, b[0])


def test_flow_to_color(tmp_path):
    zero = flow.flow_to_color(np.zeros((4, 4, 2), np.float32))
    assert zero.dtype == np.uint8 and zero.shape == (4, 4, 3)
    assert (zero == 255).all()  # white = no motion
    directions = np.float32([[1, 0], [0, 1], [-1, 0], [0, -1]])
    field = np.repeat(directions[None], 2, axis=0) * 5.0  # [2,4,2]
    rgb = flow.flow_to_color(field)
    colors = {tuple(c) for c in rgb[0]}
    assert len(colors) == 4  # four directions, four hues
    assert tuple(rgb[0, 0]) == (255, 0, 0)  # right = red at full magnitude
    # Saturation grows with magnitude.
    half = flow.flow_to_color(field * 0.5, max_magnitude=5.0)
    assert half[0, 0, 1] > rgb[0, 0, 1] and half[0, 0, 0] == 255
    path = tmp_path / "flow.png"
    flow.save_flow_png(path, field)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], rgb)
