"""Imports torchvision's S3D (`torchvision.models.video.s3d`) into the `s3d_torchvision` preset.

torchvision's S3D is S3D without gating, with a separable `[1,7,7]` + `[7,1,1]` stem, batch
norm (with gamma, eps 1e-3) after every conv including the temporal ones, and PyTorch's
symmetric padding; the preset `s3d_torchvision` reproduces exactly that. Its head (avg pool
[2,7,7] stride 1, dropout, 1x1x1 conv with bias, mean over T,H,W) is the slim head.

The mapping is a table from torchvision module prefixes to our slim-named layers:

    features.0.0.0 / features.0.0.1        Conv2d_1a_7x7 / Conv2d_1a_7x7.BatchNorm
    features.0.1.0 / features.0.1.1        Conv2d_1a_7x7.temporal / ....temporal.BatchNorm
    features.2.0                           Conv2d_2b_1x1
    features.3.{0,1}.*                     Conv2d_2c_3x3 (spatial, temporal)
    features.<i>.branch0.0                 Mixed_*.Branch_0.Conv2d_0a_1x1
    features.<i>.branch{1,2}.0             Mixed_*.Branch_{1,2}.Conv2d_0a_1x1
    features.<i>.branch{1,2}.1.{0,1}       Mixed_*.Branch_{1,2}.Conv2d_0b_3x3 (spatial, temporal)
    features.<i>.branch3.1                 Mixed_*.Branch_3.Conv2d_0b_1x1
    classifier.1                           Logits.Conv2d_0c_1x1

Conv kernels go from PyTorch `[out,in,t,h,w]` to Keras `[t,h,w,in,out]`; BN `weight, bias,
running_mean, running_var` become `gamma, beta, moving_mean, moving_variance`;
`num_batches_tracked` is dropped. torch is an optional dependency (extra `torch`), imported
only when reading a `.pth` file.
"""

from __future__ import annotations

import numpy as np

from d3d_tf.models import s3dg

PRESET = "s3d_torchvision"

# torchvision `features` index of each block.
_FEATURE_BLOCKS = {
    0: "Conv2d_1a_7x7",
    2: "Conv2d_2b_1x1",
    3: "Conv2d_2c_3x3",
    5: "Mixed_3b",
    6: "Mixed_3c",
    8: "Mixed_4b",
    9: "Mixed_4c",
    10: "Mixed_4d",
    11: "Mixed_4e",
    12: "Mixed_4f",
    14: "Mixed_5b",
    15: "Mixed_5c",
}
_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


class StateDictError(ValueError):
    """The state dict does not map onto the model; the message names the key(s)."""


def _separable(torch_prefix: str, layer: str) -> dict:
    """TemporalSeparableConv: `.0` = [1,k,k] conv + BN, `.1` = [k,1,1] conv + BN."""
    return {
        f"{torch_prefix}.0.0": layer,
        f"{torch_prefix}.0.1": f"{layer}.BatchNorm",
        f"{torch_prefix}.1.0": f"{layer}.temporal",
        f"{torch_prefix}.1.1": f"{layer}.temporal.BatchNorm",
    }


def _unit(torch_prefix: str, layer: str) -> dict:
    """Conv3dNormActivation: `.0` = conv, `.1` = BN."""
    return {f"{torch_prefix}.0": layer, f"{torch_prefix}.1": f"{layer}.BatchNorm"}


def module_table() -> dict:
    """`{torchvision module prefix: Keras layer name}` for the whole network."""
    table = {}
    for i, block in _FEATURE_BLOCKS.items():
        f = f"features.{i}"
        if block in ("Conv2d_1a_7x7", "Conv2d_2c_3x3"):
            table.update(_separable(f, block))
        elif block == "Conv2d_2b_1x1":
            table.update(_unit(f, block))
        else:
            table.update(_unit(f"{f}.branch0", f"{block}.Branch_0.Conv2d_0a_1x1"))
            for b in (1, 2):
                table.update(_unit(f"{f}.branch{b}.0", f"{block}.Branch_{b}.Conv2d_0a_1x1"))
                table.update(_separable(f"{f}.branch{b}.1", f"{block}.Branch_{b}.Conv2d_0b_3x3"))
            table.update(_unit(f"{f}.branch3.1", f"{block}.Branch_3.Conv2d_0b_1x1"))
    table["classifier.1"] = "Logits.Conv2d_0c_1x1"
    return table


def keras_variable(torch_key: str, table=None) -> tuple[str, bool] | None:
    """`(Keras variable path, is_conv_kernel)` of a state-dict key; None for `num_batches_tracked`.

    Raises StateDictError for a key that maps to nothing.
    """
    table = table or module_table()
    prefix, _, leaf = torch_key.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    layer = table.get(prefix)
    if layer is None:
        raise StateDictError(f"state dict key {torch_key!r} maps to no layer of {PRESET}")
    if layer.endswith("BatchNorm"):
        if leaf not in _BN:
            raise StateDictError(f"unexpected batch norm entry {torch_key!r}")
        return f"{layer}/{_BN[leaf]}", False
    if leaf == "weight":
        return f"{layer}/kernel", True
    if leaf == "bias":
        return f"{layer}/bias", False
    raise StateDictError(f"unexpected conv entry {torch_key!r}")


def read_state_dict(path: str) -> dict:
    """`{key: np.ndarray}` from a `torch.save`d state dict (or a dict holding one under
    `state_dict` / `model`). Needs torch (`pip install -e '.[torch]'` in the checkout)."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Reading a PyTorch .pth file needs torch: pip install -e '.[torch]' "
            "(or any CPU build of torch)."
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors come in many types; name the file.
        raise StateDictError(f"Cannot read PyTorch state dict {path!r}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise StateDictError(f"{path}: expected a state dict, got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with "module.".
    return {
        k.removeprefix("module."): v.detach().cpu().numpy()
        for k, v in obj.items()
        if hasattr(v, "detach")
    }


def import_state_dict(
    state: dict,
    *,
    num_classes: int | None = None,
    input_shape=(16, 224, 224, 3),
    source: str = "state dict",
    log=print,
):
    """Builds `s3d_torchvision` and loads the torchvision S3D `state` (`{key: array}`) into it.

    input_shape: `(T,H,W,3)` recorded with the model; torchvision's own minimum is 14 frames of
      224x224 (its head's [2,7,7] pool). Returns the model. Raises StateDictError naming any
      unmapped, missing or mis-shaped key.
    """
    head = state.get("classifier.1.weight")
    if head is None:
        raise StateDictError(f"{source}: no 'classifier.1.weight' — not a torchvision S3D")
    stem = state.get("features.0.0.0.weight")
    if np.ndim(head) != 5 or stem is None or np.ndim(stem) != 5:
        # MobileNet, MNASNet, EfficientNet... also have a classifier.1 (a 2-D Linear).
        raise StateDictError(
            f"{source}: not a torchvision S3D (classifier.1.weight of shape "
            f"{tuple(np.shape(head))}, features.0.0.0.weight "
            f"{'absent' if stem is None else tuple(np.shape(stem))}; S3D has 5-D conv kernels "
            "there) nor a video ResNet: --from=torchvision reads torchvision's s3d, r3d_18, "
            "r2plus1d_18 and resnet18")
    ckpt_classes = int(head.shape[0])
    if num_classes is not None and num_classes != ckpt_classes:
        raise StateDictError(
            f"--num_classes={num_classes} but {source} has {ckpt_classes} classes "
            "(classifier.1.weight)"
        )
    model = s3dg.build_classifier(PRESET, num_classes=ckpt_classes, input_shape=tuple(input_shape))
    weights = {w.path: w for w in model.weights}
    table = module_table()
    values, problems = {}, []
    for key, value in state.items():
        try:
            mapped = keras_variable(key, table)
        except StateDictError as e:
            problems.append(f"{e} (shape {tuple(value.shape)})")
            continue
        if mapped is None:  # num_batches_tracked: training bookkeeping only
            continue
        path, is_kernel = mapped
        if is_kernel:
            value = np.transpose(value, (2, 3, 4, 1, 0))  # [out,in,t,h,w] -> [t,h,w,in,out]
        w = weights.get(path)
        if w is None:
            problems.append(f"key {key!r} maps to {path}, which the model lacks")
        elif tuple(value.shape) != tuple(w.shape):
            problems.append(
                f"key {key!r}: shape {tuple(value.shape)} (as Keras) but {path} is {tuple(w.shape)}"
            )
        else:
            values[path] = value
    missing = [p for p in weights if p not in values]
    if missing:
        problems.append(
            f"{len(missing)} model variable(s) not in the state dict, e.g. "
            + ", ".join(missing[:10])
        )
    if problems:
        raise StateDictError(f"{source}: " + "; ".join(problems[:20]))
    for path, value in values.items():
        weights[path].assign(value.astype(np.float32))
    log(f"{source}: loaded {len(values)} variables into {PRESET} ({ckpt_classes} classes)")
    return model


# torchvision's S3D_Weights.KINETICS400_V1 transforms: frames in [0,1], then (x - mean) / std
# per RGB channel. A model directory records only [0,1]; apply these yourself before the net.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
