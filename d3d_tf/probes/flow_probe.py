"""Targets, loss and endpoint error of the flow probes (D3D §3.1–3.2), as TF ops.

Units. The pipeline's `flow` is `flow_px / 20` of the cropped (and resized) network input
frame (`d3d_tf.data.pipeline`), so `flow * FLOW_BOUND` is in **pixels of the network's input
frame**. Targets keep that unit after pooling (pooling averages vectors, it does not rescale
them), so decoders predict magnitudes, and EPE is reported, in input-frame pixels per frame.

Target pooling (`pool_flow`). The flow `[B,T,H,W,2]` is brought to the endpoint's grid
`T'×H'×W'` by averaging, per axis, over the contiguous bin of input positions that maps to
each cell: cell i of an axis of n inputs and m cells covers inputs
`floor(i·n/m) .. ceil((i+1)·n/m) - 1` (adaptive average pooling). When m divides n (the
paper's 64×224² clip: 3A is 32×28² = strides 2×8×8) these are the stride-sized blocks, i.e.
the mean over the frame pairs and pixels under each cell. Frame t's flow is the motion from
frame t to t+1 (the pipeline's pairing), so a cell averages the motion of its frames.

Polar form (Im2Flow): `(mag, sin θ, cos θ)`, θ = atan2(y, x); zero flow -> (0, 0, 1).

Loss (§3.1, "squared error ... weight the loss for the sin θ, cos θ channels by mag"): per
cell `(m̂ - m)² + m·((ŝ - s)² + (ĉ - c)²)` with m the TARGET magnitude (px), averaged over the
cells of a clip -> one value per clip.

EPE: the prediction is turned back into a vector `max(m̂, 0)·(ĉ, ŝ)` (see `from_polar`) and
compared with the pooled TV-L1 flow: mean over cells of `||pred - target||₂`, per clip. The
all-zeros baseline's EPE is the mean target magnitude.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from d3d_tf.data.preprocessing import FLOW_BOUND


def pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float32 [n_out, n_in]: row i averages the inputs of cell i (see the module doc)."""
    if n_out < 1 or n_in < n_out:
        raise ValueError(f"cannot pool {n_in} positions onto {n_out} cells")
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def pool_flow(flow, grid) -> tf.Tensor:
    """Adaptive average pooling of flow [B,T,H,W,2] onto grid (T', H', W') -> [B,T',H',W',2]."""
    flow = tf.convert_to_tensor(flow, tf.float32)
    t, h, w = flow.shape[1:4]
    mt, mh, mw = (tf.constant(pool_matrix(n, m)) for n, m in zip((t, h, w), grid))
    return tf.einsum("pt,qh,rw,bthwc->bpqrc", mt, mh, mw, flow)


def to_polar(flow) -> tf.Tensor:
    """[..., 2] (x, y) -> [..., 3] (mag, sin θ, cos θ); zero flow -> (0, 0, 1)."""
    flow = tf.convert_to_tensor(flow, tf.float32)
    x, y = flow[..., 0], flow[..., 1]
    mag = tf.sqrt(x * x + y * y)
    theta = tf.atan2(y, x)  # atan2(0, 0) = 0
    return tf.stack([mag, tf.sin(theta), tf.cos(theta)], axis=-1)


def from_polar(polar) -> tf.Tensor:
    """[..., 3] predicted (mag, sin, cos) -> [..., 2] (x, y) = max(mag, 0) · (cos, sin).

    The predicted (cos, sin) is NOT normalized: where the features do not tell the direction,
    the loss drives it towards the mean direction, shorter than 1, and the vector shrinks
    towards zero motion instead of pointing a full-length vector the wrong way.
    """
    polar = tf.convert_to_tensor(polar, tf.float32)
    mag = tf.nn.relu(polar[..., 0])
    return tf.stack([mag * polar[..., 2], mag * polar[..., 1]], axis=-1)


def targets(batch_flow, grid) -> tf.Tensor:
    """Pipeline flow (flow_px / 20) [B,T,H,W,2] -> pooled flow in input-frame px on `grid`."""
    return pool_flow(tf.cast(batch_flow, tf.float32) * FLOW_BOUND, grid)


def flow_loss(pred_polar, target_flow) -> tf.Tensor:
    """§3.1 loss per clip [B]: pred (mag, sin, cos) [B,T',H',W',3] vs target flow px [...,2]."""
    pred_polar = tf.cast(pred_polar, tf.float32)
    target = to_polar(target_flow)
    mag = target[..., 0]
    err = tf.square(pred_polar - target)
    per_cell = err[..., 0] + mag * (err[..., 1] + err[..., 2])
    return tf.reduce_mean(per_cell, axis=[1, 2, 3])


def epe(pred_flow, target_flow) -> tf.Tensor:
    """Endpoint error per clip [B] (px): mean over cells of ||pred - target||, both [B,...,2]."""
    d = tf.cast(pred_flow, tf.float32) - tf.cast(target_flow, tf.float32)
    per_cell = tf.sqrt(tf.reduce_sum(tf.square(d), axis=-1))
    return tf.reduce_mean(tf.reshape(per_cell, [tf.shape(per_cell)[0], -1]), axis=1)


def zeros_epe(target_flow) -> tf.Tensor:
    """EPE per clip [B] of the all-zeros prediction: the mean target magnitude."""
    return epe(tf.zeros_like(target_flow), target_flow)
