"""Per-frame image encoding for TFRecords: RGB frames to JPEG, quantized flow to PNG.

This module uses only OpenCV and NumPy (no TensorFlow), so `prepare`'s worker processes
can encode frames without paying TensorFlow's import time and memory.

Flow encoding (why PNG with x, y, 0):
  A frame pair's flow arrives as uint8 [H,W,2] from `flow.quantize_flow` (x then y). We store
  it as a lossless 3-channel PNG: channel 0 = x, channel 1 = y, channel 2 = 0.
  * lossless: JPEG's 8x8 block artifacts and chroma handling would add errors of several
    quantization steps (each step is 40/255 = 0.16 px) exactly where motion boundaries are;
    with PNG the network sees the flow `prepare` computed, bit for bit, and tests can check
    alignment exactly;
  * 3 channels: neither `tf.io.decode_png` nor `cv2.imencode` accept 2-channel images; a
    constant third channel costs almost nothing after PNG's row filters and deflate;
  * the pipeline decodes it with `tf.io.decode_png(channels=3)[..., :2]`.
"""
from __future__ import annotations

import cv2
import numpy as np

# Low PNG compression level: flow PNGs are written once and decoded many times; level 1
# keeps encoding cheap and decoding speed does not depend on the level.
_PNG_LEVEL = 1


def encode_jpeg_frames(frames: np.ndarray, quality: int = 90) -> list[bytes]:
    """Encodes uint8 RGB frames [N,H,W,3] into one JPEG (bytes) per frame."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = []
    for frame in frames:
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], params)  # OpenCV wants BGR
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
        out.append(buf.tobytes())
    return out


def encode_flow_png(flow_q: np.ndarray) -> list[bytes]:
    """Encodes quantized flow uint8 [N-1,H,W,2] (x, y) into one PNG per frame pair.

    The PNG holds x in channel 0, y in channel 1 and zeros in channel 2 (see module doc).
    """
    flow_q = np.asarray(flow_q)
    if flow_q.dtype != np.uint8 or flow_q.ndim != 4 or flow_q.shape[-1] != 2:
        raise ValueError(f"quantized flow must be uint8 [N-1,H,W,2], got "
                         f"{flow_q.dtype} {flow_q.shape}")
    params = [cv2.IMWRITE_PNG_COMPRESSION, _PNG_LEVEL]
    zeros = np.zeros(flow_q.shape[1:3] + (1,), np.uint8)
    out = []
    for pair in flow_q:
        # Channel order in the file must be (x, y, 0) as RGB, so give OpenCV BGR = (0, y, x).
        bgr = np.concatenate([zeros, pair[..., 1:2], pair[..., 0:1]], axis=-1)
        ok, buf = cv2.imencode(".png", bgr, params)
        if not ok:
            raise ValueError(f"PNG encoding failed for a flow pair of shape {pair.shape}")
        out.append(buf.tobytes())
    return out
