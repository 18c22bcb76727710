"""2D-to-3D inflation (Carreira & Zisserman 2017): a 2D ResNet-18's weights initialize Res3D-18.

The source is `r2d_18` (`d3d_tf.models.resnet3d` with `temporal=False`: every kernel `[1,k,k]`),
from a model directory trained here or imported from torchvision's `resnet18`
(`convert_weights --from=torchvision`). The target is `r3d_18`, whose layers have the same
names: each `[1,k,k,Cin,Cout]` kernel is replicated over the target's temporal size t and
divided by t, so that on a static clip (the same frame repeated) every conv — away from the
zero-padded clip ends — computes what the 2D conv computes on the frame. For a flow target
(2 input channels, DistInit Table 5) the first kernel is first averaged over its 3 RGB input
channels and that average replicated to the 2 flow channels. Batch norm and the head copy.
"""
from __future__ import annotations

import numpy as np


def inflate_kernel(kernel: np.ndarray, target_shape) -> np.ndarray:
    """`[1,kh,kw,Cin,Cout]` -> `target_shape` `[t,kh,kw,Cin',Cout]` (Cin' = Cin, or 2 from 3)."""
    kernel = np.asarray(kernel)
    t, kh, kw, cin, cout = target_shape
    if kernel.ndim != 5 or kernel.shape[0] != 1 or kernel.shape[1:3] != (kh, kw) or \
            kernel.shape[4] != cout:
        raise ValueError(
            f"cannot inflate a kernel of shape {kernel.shape} to {tuple(target_shape)}")
    if kernel.shape[3] != cin:
        if kernel.shape[3] != 3:
            raise ValueError(f"cannot map {kernel.shape[3]} input channels to {cin}")
        kernel = np.repeat(kernel.mean(axis=3, keepdims=True), cin, axis=3)
    return np.repeat(kernel, t, axis=0) / t


def inflate_into(target, source: dict, *, skip_prefixes=(),
                 source_name: str = "2D weights") -> list:
    """Assigns `source` (`{Keras path: array}` of an `r2d_18`) to `target` (an `r3d_18`).

    skip_prefixes: target variables left as initialized (e.g. `Logits.` for a new head).
    Returns the loaded paths. Raises ValueError naming the variable when one is missing or its
    shape cannot be inflated.
    """
    loaded = []
    for w in target.weights:
        if w.path.startswith(tuple(skip_prefixes)):
            continue
        if w.path not in source:
            raise ValueError(f"{source_name}: no variable {w.path} for the inflated network")
        value = np.asarray(source[w.path])
        if tuple(value.shape) != tuple(w.shape):
            value = inflate_kernel(value, tuple(w.shape))
        w.assign(value.astype(np.float32))
        loaded.append(w.path)
    return loaded


def inflate_model_dir(path: str, *, input_shape=(8, 112, 112), in_channels: int = 3):
    """An `r3d_18` (RGB, or flow with `in_channels=2`) inflated from the `r2d_18` model (or run)
    directory `path`; width and batch-norm options follow the source. Returns (model, spec of
    the source). Raises ValueError naming `path` unless it holds an `r2d_18`."""
    import dataclasses
    import os

    from d3d_tf.models import resnet3d, saving

    directory = saving.resolve_model_dir(path)
    spec = saving.load_spec(directory)
    if spec.name != "r2d_18":
        raise ValueError(f"{path}: inflation needs a 2D ResNet-18 (r2d_18), this is {spec.name}")
    cfg = dataclasses.replace(resnet3d.ResNet3DConfig(**spec.config), temporal=True,
                              in_channels=in_channels)
    model = resnet3d.build_classifier("r3d_18", num_classes=spec.num_classes,
                                      input_shape=(*tuple(input_shape)[:3], in_channels),
                                      config=cfg)
    with np.load(os.path.join(directory, saving.WEIGHTS_FILE)) as data:
        source = {k: data[k] for k in data.files}
    inflate_into(model, source, source_name=directory)
    return model, spec
