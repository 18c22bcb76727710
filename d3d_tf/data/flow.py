"""Optical flow: TV-L1 extraction, storage encoding, the paper's polar form, metrics, colours.

Conventions (kinetics-i3d and D3D; docs/data_pipeline.md):

* A flow field is float32 ``[..., H, W, 2]`` in **pixels**, channel 0 = x (positive to
  the right), channel 1 = y (positive **down**, image rows), mapping frame t to frame t+1:
  ``next[y + v, x + u] ~ prev[y, x]`` (OpenCV's convention).
* Stored flow is clipped to ``[-FLOW_BOUND, FLOW_BOUND]`` = [-20, 20] px and quantized to
  uint8 (:func:`quantize_flow`); networks are fed ``flow / FLOW_BOUND`` in [-1, 1].
* The flow-prediction decoders of D3D §3.1 use the Im2Flow representation
  ``(magnitude, sin θ, cos θ)`` (:func:`flow_to_polar`).

TV-L1 (:func:`tvl1_flow`) is the flow the papers use; Farneback (:func:`farneback_flow`) and
DIS (:func:`dis_flow`, many times faster than TV-L1: docs/data_scale.md) are faster stand-ins
and are NOT the paper's flow.
"""
from __future__ import annotations

import itertools
import os

import cv2
import numpy as np

from d3d_tf.data.preprocessing import FLOW_BOUND

FLOW_METHODS = ("tvl1", "farneback", "dis")


def _check_gray_pair(prev_gray, next_gray) -> tuple[np.ndarray, np.ndarray]:
    prev_gray, next_gray = np.asarray(prev_gray), np.asarray(next_gray)
    if prev_gray.ndim != 2 or prev_gray.shape != next_gray.shape:
        raise ValueError("flow needs two grayscale frames [H,W] of the same shape, got "
                         f"{prev_gray.shape} and {next_gray.shape}")
    if prev_gray.dtype != np.uint8:
        # TV-L1's default weights (lambda = 0.15) are tuned for intensities in [0, 255].
        prev_gray = prev_gray.astype(np.float32)
        next_gray = next_gray.astype(np.float32)
    return prev_gray, next_gray


def create_tvl1():
    """A fresh OpenCV Dual TV-L1 object with OpenCV's default (paper-standard) parameters.

    Creating one costs a little; :func:`compute_flow` reuses one per video.
    """
    return cv2.optflow.DualTVL1OpticalFlow_create()


def tvl1_flow(prev_gray, next_gray, tvl1=None) -> np.ndarray:
    """TV-L1 optical flow between two grayscale frames.

    Args:
      prev_gray, next_gray: ``[H, W]`` uint8 in [0, 255] (float arrays are accepted and
        must use the same [0, 255] scale, which TV-L1's default weights assume).
      tvl1: optional object from :func:`create_tvl1` to reuse.

    Returns:
      float32 ``[H, W, 2]`` flow in pixels, (x, y), from prev to next.
    """
    prev_gray, next_gray = _check_gray_pair(prev_gray, next_gray)
    tvl1 = tvl1 if tvl1 is not None else create_tvl1()
    return tvl1.calc(prev_gray, next_gray, None).astype(np.float32, copy=False)


def farneback_flow(prev_gray, next_gray) -> np.ndarray:
    """Farneback dense flow: fast but much less accurate; NOT the flow of the papers.

    Same arguments and result as :func:`tvl1_flow` (uint8 ``[H, W]`` in, float32
    ``[H, W, 2]`` pixels out). Useful for quick smoke tests and sanity checks.
    """
    prev_gray, next_gray = _check_gray_pair(prev_gray, next_gray)
    if prev_gray.dtype != np.uint8:
        prev_gray = np.clip(prev_gray, 0, 255).astype(np.uint8)
        next_gray = np.clip(next_gray, 0, 255).astype(np.uint8)
    flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, pyr_scale=0.5, levels=3,
                                        winsize=15, iterations=3, poly_n=5, poly_sigma=1.2,
                                        flags=0)
    return flow.astype(np.float32, copy=False)


def create_dis():
    """A fresh OpenCV DIS (Dense Inverse Search) flow object, preset MEDIUM (OpenCV's main
    module: no contrib needed). :func:`compute_flow` reuses one per video."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def dis_flow(prev_gray, next_gray, dis=None) -> np.ndarray:
    """DIS optical flow (Kroeger et al. 2016): fast, less accurate than TV-L1; NOT the flow of
    the papers.

    Same arguments and result as :func:`tvl1_flow` (``[H, W]`` in [0, 255], float32
    ``[H, W, 2]`` pixels (x, y) from prev to next out); `dis` from :func:`create_dis`.
    """
    prev_gray, next_gray = _check_gray_pair(prev_gray, next_gray)
    if prev_gray.dtype != np.uint8:  # DIS takes 8-bit images only
        prev_gray = np.clip(prev_gray, 0, 255).round().astype(np.uint8)
        next_gray = np.clip(next_gray, 0, 255).round().astype(np.uint8)
    dis = dis if dis is not None else create_dis()
    return dis.calc(prev_gray, next_gray, None).astype(np.float32, copy=False)


def compute_flow(frames, method: str = "tvl1") -> np.ndarray:
    """Flow between consecutive frames of a video.

    Args:
      frames: uint8 ``[N, H, W, 3]`` RGB, N >= 2.
      method: ``"tvl1"`` (the papers' flow), ``"farneback"`` or ``"dis"`` (quick, not the
        paper's).

    Returns:
      float32 ``[N-1, H, W, 2]`` flow in pixels (x, y); element t maps frame t to t+1.

    Raises:
      ValueError: unknown method, fewer than two frames, or frames not ``[N,H,W,3]``.
    """
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose one of {FLOW_METHODS}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"compute_flow needs RGB frames [N,H,W,3], got shape {frames.shape}")
    if frames.shape[0] < 2:
        raise ValueError(f"compute_flow needs at least 2 frames, got {frames.shape[0]}")
    if frames.dtype != np.uint8:
        raise ValueError(f"compute_flow needs uint8 frames, got {frames.dtype}")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    if method == "tvl1":
        tvl1 = create_tvl1()  # one object per video: it keeps its buffers between pairs
        flows = [tvl1_flow(a, b, tvl1) for a, b in itertools.pairwise(gray)]
    elif method == "dis":
        dis = create_dis()
        flows = [dis_flow(a, b, dis) for a, b in itertools.pairwise(gray)]
    else:
        flows = [farneback_flow(a, b) for a, b in itertools.pairwise(gray)]
    return np.stack(flows).astype(np.float32, copy=False)


def quantize_flow(flow, bound: float = FLOW_BOUND) -> np.ndarray:
    """Clips flow to ``[-bound, bound]`` px and maps it linearly to uint8 0..255.

    ``-bound -> 0``, ``+bound -> 255`` (so 0 px -> 127.5 -> 128 after rounding); the
    round trip with :func:`dequantize_flow` is exact to half a step, ``bound / 255``.
    Works on any shape.
    """
    flow = np.clip(np.asarray(flow, np.float32), -bound, bound)
    return np.round((flow + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)


def dequantize_flow(q, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of :func:`quantize_flow`: uint8 -> float32 pixels in ``[-bound, bound]``."""
    q = np.asarray(q, np.float32)
    return (q * (2.0 * bound / 255.0) - bound).astype(np.float32)


def flow_to_polar(flow) -> np.ndarray:
    """``[..., 2]`` (x, y) pixels -> ``[..., 3]`` (magnitude px, sin θ, cos θ), float32.

    θ = atan2(y, x) is the flow direction (Im2Flow's representation, D3D §3.1). Where the
    flow is zero the direction is undefined and we use θ = 0, i.e. (0, 0, 1); the paper
    weights the sin/cos loss by the magnitude, so that choice does not matter.
    """
    flow = np.asarray(flow, np.float32)
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must end in 2 channels (x, y), got shape {flow.shape}")
    x, y = flow[..., 0], flow[..., 1]
    mag = np.hypot(x, y)
    theta = np.arctan2(y, x)
    return np.stack([mag, np.sin(theta), np.cos(theta)], axis=-1).astype(np.float32)


def polar_to_flow(polar) -> np.ndarray:
    """``[..., 3]`` (magnitude, sin θ, cos θ) -> ``[..., 2]`` (x, y) pixels, float32.

    (sin, cos) is normalized to unit length first, so predicted (not exactly unit)
    directions also give a flow of the predicted magnitude.
    """
    polar = np.asarray(polar, np.float32)
    if polar.shape[-1] != 3:
        raise ValueError(f"polar flow must end in 3 channels (mag, sin, cos), got shape "
                         f"{polar.shape}")
    mag, s, c = polar[..., 0], polar[..., 1], polar[..., 2]
    norm = np.hypot(s, c)
    safe = np.where(norm > 0, norm, 1.0)
    return np.stack([mag * c / safe, mag * s / safe], axis=-1).astype(np.float32)


def endpoint_error(pred, target) -> float:
    """Mean endpoint error: the mean over all pixels (and batch / time) of ``||pred - target||_2``.

    Args:
      pred, target: flow ``[..., 2]`` in pixels, same shape (e.g. ``[H,W,2]`` or
        ``[B,T,H,W,2]``).
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"endpoint_error needs two [...,2] flows of the same shape, got "
                         f"{pred.shape} and {target.shape}")
    return float(np.mean(np.linalg.norm(pred - target, axis=-1)))


def flow_to_color(flow, max_magnitude: float | None = None) -> np.ndarray:
    """Visualizes flow as colour: hue = direction, saturation = magnitude, white = no motion.

    As in D3D Fig. 5. Hue follows θ = atan2(y, x) around the colour wheel (right = red,
    down = yellow-green, left = cyan, up = blue-purple); saturation is
    ``magnitude / max_magnitude`` clipped to 1; brightness is full.

    Args:
      flow: float ``[H, W, 2]`` pixels (x, y).
      max_magnitude: magnitude (px) shown fully saturated; default: this field's maximum
        (a field without motion is all white).

    Returns:
      uint8 ``[H, W, 3]`` RGB.
    """
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow_to_color needs flow [H,W,2], got shape {flow.shape}")
    mag = np.hypot(flow[..., 0], flow[..., 1])
    if max_magnitude is None:
        max_magnitude = float(mag.max())
    angle = np.mod(np.degrees(np.arctan2(flow[..., 1], flow[..., 0])), 360.0)
    saturation = mag / max_magnitude if max_magnitude > 0 else np.zeros_like(mag)
    hsv = np.stack([
        angle / 2.0,  # OpenCV's 8-bit hue is degrees / 2 in [0, 180)
        np.clip(saturation, 0.0, 1.0) * 255.0,
        np.full_like(mag, 255.0),
    ], axis=-1)
    hsv = np.round(hsv).astype(np.uint8)
    hsv[..., 0] %= 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def save_flow_png(path, flow, max_magnitude: float | None = None) -> None:
    """Writes :func:`flow_to_color` of a ``[H, W, 2]`` flow as a PNG file."""
    path = os.fspath(path)
    rgb = flow_to_color(flow, max_magnitude)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write flow image {path}")
