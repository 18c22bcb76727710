"""Model facts and weights for model-level tests (parity, round trips, exports, FLOPs)."""
from __future__ import annotations

import numpy as np

from d3d_tf.deploy.tflite import synthetic_clips

# S3D-G's inception blocks per stage, written out from TF-Slim's nets/s3dg.py (not read from
# d3d_tf.models) so that tests check the code against an independent table: (branch 0 1x1,
# branch 1 1x1 -> 3x3, branch 2 1x1 -> 3x3, branch 3 pool -> 1x1) output depths.
SLIM_STAGES = {"3": [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)],
               "4": [(192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
                     (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
                     (256, 160, 320, 32, 128, 128)],
               "5": [(256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)]}
# The same blocks by name, in build order: Mixed_3b ... Mixed_5c.
SLIM_BLOCKS = {f"Mixed_{stage}{'bcdef'[i]}": depths
               for stage, blocks in SLIM_STAGES.items() for i, depths in enumerate(blocks)}


def informative_weights(model, seed=0):
    """Weights under which the class scores depend on the clip.

    The default init (truncated normal 0.01) shrinks activations to ~0 over the depth, so
    every clip would get the same scores and parity / top-1 checks would pass trivially.
    Here: He-normal kernels, BN variance ~0.5 (a gain that makes up for self-gating's ~0.5),
    small offsets, then the logits kernel rescaled so that the logits spread ~2 over clips and
    centred.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            value = rng.uniform(0.4, 0.6, shape)
        elif "moving_mean" in w.path or w.path.endswith("bias") or "beta" in w.path:
            value = rng.normal(0.0, 0.02, shape)
        else:
            fan_in = max(int(np.prod(shape[:-1])), 1)
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        w.assign(value.astype("float32"))
    x = np.concatenate(list(synthetic_clips(8, model.inputs[0].shape[1:], seed=seed)))
    logits = model(tf.constant(x, tf.float32) / 127.5 - 1.0, training=False)
    logits = (logits["logits"] if isinstance(logits, dict) else logits).numpy()
    spread = float((logits - logits.mean(axis=0)).std()) or 1.0
    kernel = next(w for w in model.weights if w.path == "Logits.Conv2d_0c_1x1/kernel")
    kernel.assign(kernel.numpy() * (2.0 / spread))
    # Centre the classes so that the top-1 class differs between clips.
    bias = next(w for w in model.weights if w.path == "Logits.Conv2d_0c_1x1/bias")
    bias.assign(bias.numpy() - logits.mean(axis=0) * (2.0 / spread))


def spread(outputs) -> float:
    """Std of `[B,K]` outputs across the batch (mean over K): > 0 when they depend on the input."""
    outputs = np.asarray(outputs)
    return float(outputs.std(axis=0).mean())
