"""Imports torchvision's video ResNets (`r3d_18`, `r2plus1d_18`) and its 2D `resnet18` (as
`r2d_18`, the source of inflation) into `d3d_tf.models.resnet3d`.

The layer names of `resnet3d` follow torchvision's modules, so the mapping is a short table:

    stem.0 / stem.1                 conv1 / conv1.BatchNorm
    stem.3 / stem.4  (R(2+1)D)      conv1.temporal / conv1.temporal.BatchNorm
    layerI.J.convK.0 / .1  (R3D)    layerI.J.convK / layerI.J.convK.BatchNorm
    layerI.J.convK.0.0 / .0.1       layerI.J.convK / layerI.J.convK.BatchNorm   ([1,3,3] part)
    layerI.J.convK.0.3 / .1         layerI.J.convK.temporal / ....temporal.BatchNorm
    layerI.0.downsample.0 / .1      layerI.0.downsample / layerI.0.downsample.BatchNorm
    fc                              Logits.fc

Conv kernels go from `[out,in,t,h,w]` to `[t,h,w,in,out]`, the dense kernel from `[K,C]` to
`[C,K]`; batch norm as in `torch_s3d`. Reading `.pth` files (`torch_s3d.read_state_dict`) needs
torch; a state dict given as `{key: np.ndarray}` does not.
"""
from __future__ import annotations

import numpy as np

from d3d_tf.models import resnet3d
from d3d_tf.weights.torch_s3d import _BN, StateDictError

PRESETS = ("r3d_18", "r2plus1d_18")


def is_video_resnet(state: dict) -> bool:
    """True if `state` is a torchvision VideoResNet (stem + fc) or 2D resnet18 state dict."""
    return "fc.weight" in state and ("stem.0.weight" in state or is_image_resnet(state))


def is_image_resnet(state: dict) -> bool:
    """True for torchvision's 2D `resnet18` (conv1 + bn1 + fc), imported as `r2d_18`."""
    return "conv1.weight" in state and "bn1.weight" in state and "fc.weight" in state


def image_module_table(layers=(2, 2, 2, 2)) -> dict:
    """`{module prefix: Keras layer}` of torchvision's 2D resnet18 onto `r2d_18`."""
    table = {"conv1": "conv1", "bn1": "conv1.BatchNorm", "fc": "Logits.fc"}
    for i, blocks in enumerate(layers, start=1):
        for j in range(blocks):
            name = f"layer{i}.{j}"
            for k in (1, 2):
                table[f"{name}.conv{k}"] = f"{name}.conv{k}"
                table[f"{name}.bn{k}"] = f"{name}.conv{k}.BatchNorm"
            if i > 1 and j == 0:
                table[f"{name}.downsample.0"] = f"{name}.downsample"
                table[f"{name}.downsample.1"] = f"{name}.downsample.BatchNorm"
    return table


def preset_of(state: dict) -> str:
    """`r2plus1d_18` if the stem is (2+1)D (has `stem.3`), else `r3d_18`."""
    return "r2plus1d_18" if "stem.3.weight" in state else "r3d_18"


def module_table(block: str, layers=(2, 2, 2, 2)) -> dict:
    """`{torchvision module prefix: Keras layer name}` of a video ResNet with `block` convs."""
    table = {"stem.0": "conv1", "stem.1": "conv1.BatchNorm", "fc": "Logits.fc"}
    if block == "2plus1d":
        table.update({"stem.3": "conv1.temporal", "stem.4": "conv1.temporal.BatchNorm"})
    for i, blocks in enumerate(layers, start=1):
        for j in range(blocks):
            name = f"layer{i}.{j}"
            for k in (1, 2):
                conv = f"{name}.conv{k}"
                if block == "3d":
                    table[f"{conv}.0"] = conv
                    table[f"{conv}.1"] = f"{conv}.BatchNorm"
                else:
                    table[f"{conv}.0.0"] = conv
                    table[f"{conv}.0.1"] = f"{conv}.BatchNorm"
                    table[f"{conv}.0.3"] = f"{conv}.temporal"
                    table[f"{conv}.1"] = f"{conv}.temporal.BatchNorm"
            if i > 1 and j == 0:
                table[f"{name}.downsample.0"] = f"{name}.downsample"
                table[f"{name}.downsample.1"] = f"{name}.downsample.BatchNorm"
    return table


def keras_value(torch_key: str, value: np.ndarray, table: dict):
    """`(Keras variable path, value in Keras layout)`, or None for `num_batches_tracked`.

    Raises StateDictError for a key that maps to nothing.
    """
    prefix, _, leaf = torch_key.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    layer = table.get(prefix)
    if layer is None:
        raise StateDictError(f"state dict key {torch_key!r} maps to no layer")
    if layer.endswith("BatchNorm"):
        if leaf not in _BN:
            raise StateDictError(f"unexpected batch norm entry {torch_key!r}")
        return f"{layer}/{_BN[leaf]}", value
    if leaf == "bias":
        return f"{layer}/bias", value
    if leaf != "weight":
        raise StateDictError(f"unexpected entry {torch_key!r}")
    if value.ndim == 5:
        value = np.transpose(value, (2, 3, 4, 1, 0))  # [out,in,t,h,w] -> [t,h,w,in,out]
    elif value.ndim == 4:
        value = np.transpose(value, (2, 3, 1, 0))[None]  # 2D [out,in,h,w] -> [1,h,w,in,out]
    elif value.ndim == 2:
        value = value.T  # Linear [K,C] -> Dense [C,K]
    return f"{layer}/kernel", value


def assign_state_dict(model, state: dict, table: dict, *, source: str) -> int:
    """Assigns every entry of `state` to the variable of `model` that `table` maps it to.

    Returns the number of variables assigned. Raises StateDictError naming every unmapped,
    mis-shaped or missing key (nothing is assigned then).
    """
    weights = {w.path: w for w in model.weights}
    values, problems = {}, []
    for key, value in state.items():
        try:
            mapped = keras_value(key, np.asarray(value), table)
        except StateDictError as e:
            problems.append(f"{e} (shape {tuple(np.shape(value))})")
            continue
        if mapped is None:
            continue
        path, value = mapped
        w = weights.get(path)
        if w is None:
            problems.append(f"key {key!r} maps to {path}, which the model lacks")
        elif tuple(value.shape) != tuple(w.shape):
            problems.append(f"key {key!r}: shape {tuple(value.shape)} (as Keras) but {path} is "
                            f"{tuple(w.shape)}")
        else:
            values[path] = value
    missing = [p for p in weights if p not in values]
    if missing:
        problems.append(f"{len(missing)} model variable(s) not in the state dict, e.g. "
                        + ", ".join(missing[:10]))
    if problems:
        raise StateDictError(f"{source}: " + "; ".join(problems[:20]))
    for path, value in values.items():
        weights[path].assign(value.astype(np.float32))
    return len(values)


def import_state_dict(state: dict, *, num_classes: int | None = None,
                      input_shape=(16, 112, 112, 3), source: str = "state dict", log=print):
    """Builds `r3d_18`, `r2plus1d_18` or (torchvision's 2D resnet18) `r2d_18`, found from the
    keys, and loads `state` into it.

    input_shape: `(T,H,W,3)` recorded with the model (torchvision's Kinetics weights: 16 frames
      of 112x112). Returns the model; raises StateDictError naming any bad key.
    """
    if not (is_video_resnet(state) or is_image_resnet(state)):
        raise StateDictError(f"{source}: no 'stem.0.weight' (or 'conv1.weight') and "
                             "'fc.weight' — not a torchvision video ResNet nor resnet18")
    ckpt_classes = int(np.shape(state["fc.weight"])[0])
    if num_classes is not None and num_classes != ckpt_classes:
        raise StateDictError(f"--num_classes={num_classes} but {source} has {ckpt_classes} "
                             "classes (fc.weight)")
    preset = "r2d_18" if is_image_resnet(state) else preset_of(state)
    model = resnet3d.build_classifier(preset, num_classes=ckpt_classes,
                                      input_shape=tuple(input_shape))
    table = image_module_table() if preset == "r2d_18" else \
        module_table(model.d3d_config.block, model.d3d_config.layers)
    n = assign_state_dict(model, state, table, source=source)
    log(f"{source}: loaded {n} variables into {preset} ({ckpt_classes} classes)")
    return model
