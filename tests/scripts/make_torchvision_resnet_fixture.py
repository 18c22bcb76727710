"""Writes tests/fixtures/torchvision_resnet3d.npz: torchvision r3d_18 / r2plus1d_18 logits, and
those of the 2D resnet18 (its stem max pool removed) on the clip's first frame.

Run with a Python that has torch and torchvision (not needed by the tests themselves):

    python tests/scripts/make_torchvision_resnet_fixture.py [out.npz]

Both networks get weights drawn from numpy (`synthetic_state`, seeded per key) and one clip
(`synthetic_clip`); the fixture stores only the state dict's keys and shapes and the
torchvision logits, a few KB. tests/test_resnet3d.py draws the same weights and clip with
numpy, converts them with d3d_tf.weights.torch_resnet3d and compares the logits.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

import numpy as np

SEED = 0
CLIP_SHAPE = (1, 4, 16, 16, 3)  # [B,T,H,W,C]: 4 frames of 16x16 reach layer4 at 1x1x1
MODELS = ("r3d_18", "r2plus1d_18")


def synthetic_state(shapes: dict, seed: int = SEED) -> dict:
    """`{key: float32 array}` for a VideoResNet state dict with these `{key: shape}`.

    Conv / linear weights are He-normal (activations stay O(1) through 18 layers), batch norm
    gets random gamma, beta and running statistics so that the import of each is checked.
    """
    state = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        shape = tuple(shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            continue
        if leaf == "weight" and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif leaf in ("weight", "running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # BN bias / running_mean, fc bias
            value = rng.normal(0.0, 0.1, shape)
        state[key] = value.astype(np.float32)
    return state


def synthetic_clip(seed: int = SEED) -> np.ndarray:
    """The NDHWC float32 clip both sides run, values in [-1, 1]."""
    return np.random.default_rng(seed).uniform(-1, 1, CLIP_SHAPE).astype(np.float32)


def main(out: str) -> None:
    import torch
    from torchvision import models
    from torchvision.models import video

    arrays = {"clip_shape": np.array(CLIP_SHAPE)}
    clip = torch.from_numpy(synthetic_clip().transpose(0, 4, 1, 2, 3).copy())  # NCDHW
    for name in MODELS:
        net = getattr(video, name)(weights=None).eval()
        shapes = {k: list(v.shape) for k, v in net.state_dict().items()
                  if not k.endswith("num_batches_tracked")}
        state = synthetic_state(shapes)
        result = net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                     strict=False)
        assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result
        with torch.no_grad():
            logits = net(clip).numpy()
        arrays[f"{name}/shapes"] = np.array(json.dumps(shapes))
        arrays[f"{name}/logits"] = logits.astype(np.float32)
        print(f"{name}: {sum(int(np.prod(s)) for s in shapes.values())} state values, logits "
              f"{logits.shape}, |logits| mean {np.abs(logits).mean():.3f}")
    # 2D resnet18 without its stem max pool (which r2d_18 leaves out) on the clip's first frame.
    net = models.resnet18(weights=None).eval()
    net.maxpool = torch.nn.Identity()
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    state = synthetic_state(shapes)
    result = net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                 strict=False)
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result
    with torch.no_grad():
        logits = net(clip[:, :, 0]).numpy()
    arrays["resnet18/shapes"] = np.array(json.dumps(shapes))
    arrays["resnet18/logits"] = logits.astype(np.float32)
    print(f"resnet18 (no max pool): logits {logits.shape}")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(here, "..", "fixtures", "torchvision_resnet3d.npz"))
