"""Imports TF-Slim S3D-G / S3D / I3D checkpoints (and the released D3D ones) into Keras.

A TF1 checkpoint is read with `tf.train.load_checkpoint` only (no TF1 graph code, no tf_slim).
Every Keras variable is looked up under its slim name (`d3d_tf.models.naming.slim_name`):

    Keras `Mixed_4b.Branch_1.Conv2d_0b_3x3/kernel`   slim `<scope>/Mixed_4b/Branch_1/.../weights`
    Keras `....Conv2d_0b_3x3.BatchNorm/beta`         slim `.../Conv2d_0b_3x3/BatchNorm/beta`
    Keras `....temporal/bias`                        slim `.../temporal/biases`
    Keras `....self_gating/transformer_W`            slim `.../self_gating/transformer_W/weights`
    Keras `Logits.Conv2d_0c_1x1/kernel`              slim `<scope>/Logits/Conv2d_0c_1x1/weights`

Slim stores conv kernels as `[t,h,w,in,out]`, the Keras layout, so values are copied as they are.

Which checkpoint variables are *not* model weights, and are skipped (decided here):
  - `global_step`, and optimizer state: any variable whose last name component is an optimizer
    slot (`Momentum`, `Adam`, `Adam_1`, `RMSProp`, `RMSProp_1`, `Adagrad`, `Ftrl`, `Ftrl_1`,
    `AdamW`, `AdamW_1`) and `beta1_power` / `beta2_power`;
  - `<var>/ExponentialMovingAverage` shadows, unless `use_ema`, which loads each weight from its
    shadow where it has one (slim's train_image_classifier averages the trainable and the batch
    norm moving variables);
  - anything matched by one of `ignore` (regular expressions), for checkpoints that carry other
    networks (e.g. a distillation teacher) the user chose to drop.
Every other variable must map onto the model: an unmapped, missing or mis-shaped variable is
an error that names it.

The architecture is read from the checkpoint itself (`infer_config`): input channels and first
temporal kernel from the stem's `[k,7,7,C,64]` kernel, separable from `.../temporal/weights`,
`temporal_conv_startat` / `gating_startat` from the first block with a temporal kernel / a
`self_gating` variable, depth multiplier as the one that reproduces every conv's channel count
(`infer_depth_multiplier`), final endpoint from the last block present, classes from the
logits kernel. Explicit options are cross-checked against it.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from d3d_tf.models import naming, s3dg

OPTIMIZER_SLOTS = (
    "Momentum",
    "Adam",
    "Adam_1",
    "AdamW",
    "AdamW_1",
    "RMSProp",
    "RMSProp_1",
    "Adagrad",
    "Ftrl",
    "Ftrl_1",
)
NON_MODEL_VARIABLES = ("global_step", "beta1_power", "beta2_power")
EMA_SUFFIX = "/ExponentialMovingAverage"
STEM = "Conv2d_1a_7x7"


class CheckpointError(ValueError):
    """The checkpoint does not map onto the model; the message names the variable(s)."""


@dataclasses.dataclass(frozen=True)
class SlimImportConfig:
    """What to import and how.

    checkpoint: checkpoint prefix (`.../model.ckpt-123`) or a directory with a `checkpoint` file.
    model: preset (`s3dg`, `s3d`, `i3d`) or None to infer it from the variables.
    num_classes: expected classes, or None to take them from the logits kernel.
    input_shape: `(T,H,W,C)` recorded in the model directory (the net is fully convolutional);
      C None = from the stem kernel.
    scope: the slim top scope, or None to find it (the prefix of `.../Conv2d_1a_7x7/weights`).
    use_ema: load `ExponentialMovingAverage` shadows where present.
    ignore: regular expressions (re.search) of checkpoint variables to skip on purpose.
    options: further S3DGConfig fields (e.g. `depth_multiplier`, `final_endpoint`), checked
      against what the checkpoint says.
    """

    checkpoint: str
    model: str | None = None
    num_classes: int | None = None
    input_shape: tuple = (64, 224, 224, None)
    scope: str | None = None
    use_ema: bool = False
    ignore: tuple = ()
    options: dict = dataclasses.field(default_factory=dict)


def _reader(path: str):
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(path)
    except Exception as e:  # TF raises several types for a bad path; name the file.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"Cannot read TF checkpoint {path!r}: {first}") from e


def read_checkpoint(path: str) -> dict:
    """All variables of a TF checkpoint as `{name: np.ndarray}` (via `tf.train.load_checkpoint`)."""
    reader = _reader(path)
    names = reader.get_variable_to_shape_map()
    out = {}
    for name in sorted(names):
        try:
            out[name] = np.asarray(reader.get_tensor(name))
        except Exception as e:  # a cut-off .data file: IndexError; a damaged one: DataLossError
            import tensorflow as tf

            data = ", ".join(sorted(tf.io.gfile.glob(f"{path}.data-*"))) or f"{path}.data-*"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{data}: variable {name!r} cannot be read ({first}): the "
                                  f"checkpoint's data file is truncated or damaged") from e
    return out


def is_skipped(name: str, use_ema: bool = False, ignore=()) -> bool:
    """True for checkpoint variables that are not model weights (see the module docstring)."""
    leaf = name.rsplit("/", 1)[-1]
    if name in NON_MODEL_VARIABLES or leaf in NON_MODEL_VARIABLES or leaf in OPTIMIZER_SLOTS:
        return True
    if name.endswith(EMA_SUFFIX):
        return True  # shadows are read through their variable's name when use_ema
    return any(re.search(p, name) for p in ignore)


def find_scope(variables: dict) -> str:
    """The slim top scope (`InceptionV1` for slim's s3dg): the prefix of the stem's weights."""
    suffix = f"/{STEM}/weights"
    scopes = sorted({n[: -len(suffix)] for n in variables if n.endswith(suffix)})
    if len(scopes) != 1:
        raise CheckpointError(
            f"Expected exactly one '<scope>{suffix}' variable to find the network scope, "
            f"found {scopes or 'none'}; pass the scope explicitly."
        )
    return scopes[0]


def _block_of(name: str, scope: str) -> str | None:
    rest = name[len(scope) + 1 :] if name.startswith(scope + "/") else None
    return rest.split("/", 1)[0] if rest else None


def base_depths() -> dict:
    """`{slim path under the scope of every conv kernel: its depth d before the multiplier}`."""
    out = {f"{STEM}/weights": 64, "Conv2d_2b_1x1/weights": 64, "Conv2d_2c_3x3/weights": 192}
    branches = ("Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3",
                "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_3/Conv2d_0b_1x1")
    for block, depths in s3dg.INCEPTION_DEPTHS.items():
        for branch, d in zip(branches, depths):
            out[f"{block}/{branch}/weights"] = d
    return out


def _depth(d: int, m: float, min_depth: int) -> int:
    return s3dg.S3DGConfig(depth_multiplier=m, min_depth=min_depth).depth(d)


def infer_depth_multiplier(shapes: dict, scope: str, given: float | None = None,
                           min_depth: int = 16) -> float:
    """The depth multiplier m for which slim's `depth(d) = max(int(d * m), min_depth)` gives
    every conv kernel of the checkpoint its output channels.

    `int()` truncates, so a layer with c > min_depth channels only says m lies in
    `[c/d, (c+1)/d)`, and c = min_depth says m < (min_depth+1)/d. The intersection over all
    layers is searched for the value with the fewest decimals (0.3 rather than 115/384), which
    is then checked against every layer. `given` (the user's `--depth_multiplier`) is only
    checked (CheckpointError naming the first layer it does not explain). When no multiplier
    explains every layer, the one most layers agree on is returned.
    """
    pairs = []  # (slim path, d, channels)
    for path, d in base_depths().items():
        shape = shapes.get(f"{scope}/{path}")
        if shape is not None:
            pairs.append((path, d, int(shape[-1])))

    def mismatch(m):
        return next(((p, d, c) for p, d, c in pairs if _depth(d, m, min_depth) != c), None)

    if given is not None:
        bad = mismatch(given)
        if bad:
            p, d, c = bad
            raise CheckpointError(
                f"--depth_multiplier={given} gives {scope}/{p} {_depth(d, given, min_depth)} "
                f"output channels but the checkpoint has {c}")
        return given

    lo, hi = 0.0, float("inf")
    for _, d, c in pairs:
        if c > min_depth:
            lo, hi = max(lo, c / d), min(hi, (c + 1) / d)
        else:
            hi = min(hi, (min_depth + 1) / d)
    for decimals in range(1, 7):
        step = 10.0 ** -decimals
        first = max(math.ceil(lo / step - 1e-6), 1)
        for k in (first, first + 1):
            m = round(k * step, decimals)
            if m < hi and mismatch(m) is None:
                return m
    # Some layer is mis-shaped: take the multiplier most layers agree on, so that the import
    # names the variables that disagree with it.
    candidates = [c / d for _, d, c in pairs if c > min_depth] or [1.0]
    return max(candidates, key=lambda m: sum(_depth(d, m, min_depth) == c for _, d, c in pairs))


def infer_config(variables: dict, scope: str,
                 depth_multiplier: float | None = None) -> tuple[str, dict, int | None]:
    """Reads the architecture off the variable names and shapes.

    `depth_multiplier`: the user's value, checked against the channel counts (else inferred).

    Returns `(preset, S3DGConfig fields, num_classes or None when there are no logits)`.
    """
    shapes = {n: v.shape for n, v in variables.items() if n.startswith(scope + "/")}
    stem = shapes.get(f"{scope}/{STEM}/weights")
    if stem is None or len(stem) != 5:
        raise CheckpointError(f"No 5-D stem kernel {scope}/{STEM}/weights in the checkpoint")
    fields = {"first_temporal_kernel_size": int(stem[0]), "in_channels": int(stem[3])}
    blocks = {_block_of(n, scope) for n in shapes}
    present = [e for e in s3dg.VALID_ENDPOINTS if e in blocks]
    fields["final_endpoint"] = present[-1]

    separable = any(n.endswith("/temporal/weights") for n in shapes)
    fields["separable"] = separable
    temporal = None
    for block in s3dg.CONV_BLOCKS:
        names = [n for n in shapes if _block_of(n, scope) == block]
        if separable:
            has_t = any(n.endswith("/temporal/weights") for n in names)
        else:
            has_t = any(n.endswith("_3x3/weights") and shapes[n][0] > 1 for n in names)
        if has_t:
            temporal = block
            break
    fields["temporal_conv_startat"] = temporal
    gating = next(
        (
            b
            for b in s3dg.CONV_BLOCKS
            if any(_block_of(n, scope) == b and "/self_gating/" in n for n in shapes)
        ),
        None,
    )
    fields["gating_startat"] = gating

    fields["depth_multiplier"] = infer_depth_multiplier(shapes, scope, depth_multiplier)

    fields["batch_norm_scale"] = any(n.endswith("/BatchNorm/gamma") for n in shapes)

    logits = shapes.get(f"{scope}/Logits/Conv2d_0c_1x1/weights")
    num_classes = int(logits[-1]) if logits is not None else None
    if gating:
        preset = "s3dg"
    elif separable:
        preset = "s3d"
    else:
        preset = "i3d"
    return preset, fields, num_classes


def _resolve(cfg: SlimImportConfig, variables: dict, scope: str):
    preset, inferred, ckpt_classes = infer_config(
        variables, scope, cfg.options.get("depth_multiplier"))
    if ckpt_classes is None:
        raise CheckpointError(
            f"{cfg.checkpoint}: no {scope}/Logits/Conv2d_0c_1x1/weights — not a classifier "
            "checkpoint"
        )
    if cfg.num_classes is not None and cfg.num_classes != ckpt_classes:
        raise CheckpointError(
            f"--num_classes={cfg.num_classes} but the checkpoint's logits kernel "
            f"{scope}/Logits/Conv2d_0c_1x1/weights has {ckpt_classes} classes"
        )
    name = cfg.model or preset
    # The preset the user asked for must agree with what the variables say.
    # (Only the structure: a preset's kernel sizes and start blocks are taken from the checkpoint.)
    preset_cfg = s3dg.make_config(name)
    checks = {
        "separable": (preset_cfg.separable, inferred["separable"]),
        "self-gating": (
            preset_cfg.gating_startat is not None,
            inferred["gating_startat"] is not None,
        ),
    }
    for key, (want, have) in checks.items():
        if cfg.model and want != have:
            raise CheckpointError(
                f"--model={name} has {key}={want} but the checkpoint {cfg.checkpoint} has "
                f"{key}={have} (it looks like a {preset} checkpoint)"
            )
    for key, value in cfg.options.items():
        if key in inferred and inferred[key] != value:
            raise CheckpointError(
                f"option {key}={value!r} disagrees with the checkpoint, which has {inferred[key]!r}"
            )
    fields = {**inferred, **cfg.options}
    return name, s3dg.make_config(name, **fields), ckpt_classes


def import_checkpoint(cfg: SlimImportConfig, log=print):
    """Builds the classifier the checkpoint describes and loads every variable into it.

    Returns `(model, info)`; info has `preset`, `scope`, `loaded` (count), `skipped` (names) and
    `ema` (how many weights came from EMA shadows). Raises CheckpointError naming any unmapped,
    missing or mis-shaped variable.
    """
    variables = read_checkpoint(cfg.checkpoint)
    scope = cfg.scope or find_scope(variables)
    name, config, num_classes = _resolve(cfg, variables, scope)
    input_shape = tuple(cfg.input_shape[:3]) + (config.in_channels,)
    model = s3dg.build_classifier(
        name, num_classes=num_classes, input_shape=input_shape, config=config
    )
    log(f"{cfg.checkpoint}: scope {scope}, preset {name}, {num_classes} classes, config {config}")

    skipped = [n for n in variables if is_skipped(n, cfg.use_ema, cfg.ignore)]
    wanted = {n for n in variables if n not in skipped}
    missing, misshaped, values, ema = [], [], [], 0
    for w in model.weights:
        slim = naming.slim_name(w.path, scope)
        if slim not in variables:
            missing.append(f"{slim} (for {w.path}, shape {tuple(w.shape)})")
            continue
        wanted.discard(slim)
        value = variables[slim]
        if cfg.use_ema and slim + EMA_SUFFIX in variables:
            value = variables[slim + EMA_SUFFIX]
            ema += 1
        if tuple(value.shape) != tuple(w.shape):
            misshaped.append(
                f"{slim}: {tuple(value.shape)} in the checkpoint, "
                f"{tuple(w.shape)} in the model ({w.path})"
            )
            continue
        values.append((w, value))
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} model variable(s) missing from the checkpoint: "
            + "; ".join(missing[:10])
        )
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped variable(s): " + "; ".join(misshaped[:10]))
    if wanted:
        extra = sorted(wanted)
        problems.append(
            f"{len(extra)} checkpoint variable(s) that map to no model variable: "
            + ", ".join(extra[:10])
        )
    if problems:
        raise CheckpointError(f"{cfg.checkpoint}: " + " | ".join(problems))
    for w, value in values:
        w.assign(value.astype(np.float32))
    if cfg.use_ema and ema == 0:
        log("warning: --use_ema given but the checkpoint has no ExponentialMovingAverage shadows")
    log(f"loaded {len(values)} variables ({ema} from EMA shadows), skipped {len(skipped)}")
    return model, {
        "preset": name,
        "scope": scope,
        "loaded": len(values),
        "skipped": skipped,
        "ema": ema,
    }


def has_ema(path: str) -> bool:
    """Whether the checkpoint carries ExponentialMovingAverage shadows."""
    return any(n.endswith(EMA_SUFFIX) for n in _reader(path).get_variable_to_shape_map())
