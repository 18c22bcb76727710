"""Writes tests/fixtures/torchvision_s3d.npz: torchvision S3D's outputs under numpy-made weights.

    /path/to/venv-with-torch/bin/python tests/scripts/make_torchvision_s3d_fixture.py

The fixture holds no weights and no input clip: both are made from numpy seeds by
`numpy_state_dict` and `numpy_clips` below (importable without torch), so the test regenerates
them, converts the weights with d3d_tf.weights.torch_s3d and compares its logits with the ones
torchvision computed here. Stored: every state-dict key and shape (in torchvision's order), the
seeds, the clip shape, torchvision's logits and the per-channel mean of its Mixed_5c features.
Run it where torch and torchvision are installed, never in a process that imports TensorFlow.
"""
from __future__ import annotations

import os
import sys

import numpy as np

WEIGHT_SEED, CLIP_SEED = 0, 3
CLASSES = 400
CLIP_SHAPE = (2, 16, 224, 224, 3)  # NDHWC; torchvision's head needs >= 14 frames of 224 px
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "torchvision_s3d.npz")


def numpy_state_dict(keys, shapes, seed=WEIGHT_SEED) -> dict:
    """`{key: float32 array}` in torchvision's layout, drawn in key order from one generator.

    Conv kernels `[out,in,t,h,w]`: He-normal (activations stay O(1) through the 30 layers, so
    padding or layout mistakes show in the outputs), the classifier's scaled by 0.03 (logits
    of order 1); batch norm: gamma, running_var U(0.5, 1.5), beta, running_mean and the
    classifier bias U(-0.2, 0.2); `num_batches_tracked` 0.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in zip(keys, shapes):
        shape = tuple(int(s) for s in shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            value = np.zeros(shape, np.int64)
        elif leaf == "weight" and len(shape) == 5:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
            if key.startswith("classifier."):
                value = value * 0.03
        elif leaf in ("weight", "running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, running_mean
            value = rng.uniform(-0.2, 0.2, shape)
        state[key] = value if value.dtype == np.int64 else value.astype(np.float32)
    return state


def numpy_clips(shape=CLIP_SHAPE, seed=CLIP_SEED) -> np.ndarray:
    """float32 NDHWC clips, N(0, 1)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(np.float32)


def main():
    import torch
    import torchvision
    from torchvision.models.video import s3d

    net = s3d(num_classes=CLASSES)
    keys = list(net.state_dict())
    shapes = [tuple(v.shape) for v in net.state_dict().values()]
    state = numpy_state_dict(keys, shapes)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    net.eval()
    clips = numpy_clips()
    with torch.no_grad():  # NDHWC -> NCDHW
        x = torch.from_numpy(clips.transpose(0, 4, 1, 2, 3).copy())
        logits = net(x).numpy()
        features = net.features(x).numpy()  # [N,C,T,H,W]
    ndims = np.array([len(s) for s in shapes])
    np.savez_compressed(
        OUT,
        keys=np.array(keys),
        shape_ndims=ndims,
        shape_dims=np.array([d for s in shapes for d in s], np.int64),
        weight_seed=WEIGHT_SEED,
        clip_seed=CLIP_SEED,
        clip_shape=np.array(CLIP_SHAPE),
        logits=logits.astype(np.float32),
        mixed_5c_mean=features.mean(axis=(2, 3, 4)).astype(np.float32),
        versions=np.array([f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]),
    )
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes): logits {logits.shape}, std "
          f"{logits.std():.3f}; torch {torch.__version__}, torchvision {torchvision.__version__}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
