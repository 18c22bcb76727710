"""Converts public pretrained checkpoints into a d3d_tf model directory.

    # TF-Slim S3D-G / S3D / I3D checkpoints, e.g. the released D3D models (RGB in [-1,1])
    python -m d3d_tf.convert_weights --from=slim --source=d3d/model.ckpt \\
        --num_classes=400 --labels=kinetics400.txt --out_dir=models/d3d_k400

    # torchvision's S3D (a state_dict saved with torch.save; needs the `torch` extra)
    python -m d3d_tf.convert_weights --from=torchvision --source=s3d.pth \\
        --num_classes=400 --out_dir=models/s3d_tv

    # Res3D-18 inflated from a 2D ResNet-18 model directory (r2d_18), e.g. resnet18 imported
    # from torchvision; --inflate_modality=flow for a flow student
    python -m d3d_tf.convert_weights --from=inflate --source=models/resnet18 \\
        --num_frames=8 --crop_size=112 --out_dir=models/r3d_18_inflated

    # torchvision's r3d_18 / r2plus1d_18 / resnet18 (found from the state dict's keys)
    python -m d3d_tf.convert_weights --from=torchvision --source=r2plus1d_18.pth \\
        --num_frames=16 --crop_size=112 --out_dir=models/r2plus1d_18_k400

The model directory (`model.json` + `weights.npz`) works with evaluate, export and predict.
See docs/weights.md.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags, logging

from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field, section
from d3d_tf.data import preprocessing
from d3d_tf.data.clip import ClipConfig

FLAGS = flags.FLAGS


@dataclasses.dataclass
class ConvertConfig:
    """The flags of `python -m d3d_tf.convert_weights` (`d3d_tf.core.config_flags`) besides
    --from (a Python keyword) and the repeatable --ignore."""
    source: str | None = field(None, "Slim: checkpoint prefix (model.ckpt-N) or its directory. "
                               "torchvision: the .pth file written by "
                               "torch.save(model.state_dict()).")
    out_dir: str | None = field(None, "Model directory to write (model.json + weights.npz).")
    num_classes: int | None = field(None, "Expected number of classes; checked against the "
                                    "checkpoint's logits layer (taken from it when omitted).")
    model: str | None = field(None, "Slim only: the preset the checkpoint should be; inferred "
                              "from its variables when omitted, cross-checked otherwise.",
                              choices=("s3dg", "s3d", "i3d"))
    rgb_range: str | None = field(None, "How float RGB is scaled for this model, recorded in "
                                  "model.json. Default: [-1,1] for slim (TF-Slim's Inception "
                                  "preprocessing, which the released D3D checkpoints were "
                                  "trained with) and [0,1] for torchvision (which additionally "
                                  "expects its Kinetics mean/std, see docs/weights.md). "
                                  "--check_clip shows which range a checkpoint prefers on a "
                                  "clip you know.", choices=preprocessing.RGB_RANGES)
    depth_multiplier: float | None = field(None, "Slim: the network's depth multiplier; checked "
                                           "against every conv's channel count (default: "
                                           "inferred from them).", min=0.0)
    check_clip: str | None = field(None, "A video of a class the checkpoint knows: after "
                                   "converting, print the top-1 class and its probability on "
                                   "its centre clip with the pixels in [-1,1] and in [0,1]; "
                                   "the range with the confident, correct answer is the one "
                                   "the checkpoint expects.")
    inflate_modality: str = field("rgb", "inflate: input of the Res3D-18 (flow: the first "
                                  "kernel averaged over RGB, replicated to 2 channels).",
                                  choices=("rgb", "flow"))
    labels: str | None = field(None, "Optional text file with one class name per line.")
    clip: ClipConfig = section(ClipConfig, "Clip recorded in model.json (num_frames default: "
                               "64 for slim, 16 for torchvision, 8 for inflate)")
    use_ema: bool = field(False, "Slim: load ExponentialMovingAverage shadows where the "
                          "checkpoint has them.")
    scope: str | None = field(None, "Slim: top variable scope (default: found from the "
                              "checkpoint, InceptionV1 for slim's s3dg).")


flags.DEFINE_enum("from", None, ["slim", "torchvision", "inflate"], "Checkpoint format: a "
                  "TF-Slim TF1 checkpoint (S3D-G/S3D/I3D, D3D release) or a torchvision S3D / "
                  "r3d_18 / r2plus1d_18 / resnet18 state_dict (the network is found from its "
                  "keys), or inflate: a 2D ResNet-18 model directory (r2d_18) inflated into "
                  "Res3D-18.")
NOT_USED = ("frame_stride", "resize_short_side")  # a converted model records no sampling
config_flags.define_flags(ConvertConfig, exclude=NOT_USED, defaults={"num_frames": None})
flags.DEFINE_multi_string("ignore", [], "Slim: regular expression of checkpoint variables to "
                          "skip on purpose (repeatable), e.g. a distillation teacher's scope.")
HELP_GROUPS = [("Source", ["from", "ignore"]), *cli.help_groups(ConvertConfig)]


def _read_labels(path):
    return preprocessing.read_labels(path) if path else []


def main(argv):
    del argv
    try:
        convert()
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise app.UsageError(str(e).splitlines()[0] if str(e) else repr(e))


def convert():
    """Converts --source to --out_dir (and runs --check_clip); library errors propagate."""
    c = config_flags.from_flags(ConvertConfig, exclude=NOT_USED)
    from d3d_tf.models import saving
    from d3d_tf.weights import slim as slim_import

    source = getattr(FLAGS, "from")
    labels = _read_labels(c.labels)
    if source == "slim":
        options = {}
        if c.depth_multiplier is not None:
            options["depth_multiplier"] = c.depth_multiplier
        if not c.use_ema and slim_import.has_ema(c.source):
            logging.info(
                "The checkpoint has ExponentialMovingAverage shadows; pass --use_ema "
                "to load them (often the better weights)."
            )
        cfg = slim_import.SlimImportConfig(
            checkpoint=c.source,
            model=c.model,
            num_classes=c.num_classes,
            input_shape=(c.clip.num_frames or 64, c.clip.crop_size, c.clip.crop_size, None),
            scope=c.scope,
            use_ema=c.use_ema,
            ignore=tuple(FLAGS.ignore),
            options=options,
        )
        model, info = slim_import.import_checkpoint(cfg, log=logging.info)
        name = info["preset"]
        note = ""
    elif source == "inflate":
        from d3d_tf.weights import inflate

        model, src = inflate.inflate_model_dir(
            c.source, input_shape=(c.clip.num_frames or 8, c.clip.crop_size, c.clip.crop_size),
            in_channels=2 if c.inflate_modality == "flow" else 3)
        name, note = "r3d_18", " (inflated from a 2D ResNet-18)"
        labels = labels or src.labels
    else:
        from d3d_tf.weights import torch_resnet3d, torch_s3d

        state = torch_s3d.read_state_dict(c.source)
        importer = torch_resnet3d if torch_resnet3d.is_video_resnet(state) else torch_s3d
        model = importer.import_state_dict(
            state,
            num_classes=c.num_classes,
            input_shape=(c.clip.num_frames or 16, c.clip.crop_size, c.clip.crop_size, 3),
            source=c.source,
            log=logging.info,
        )
        name = model.name
        note = f" (expects (x - {torch_s3d.KINETICS_MEAN}) / {torch_s3d.KINETICS_STD} on [0,1])"
    in_channels = model.d3d_config.in_channels
    default_range = "[-1,1]" if source == "slim" else "[0,1]"
    spec = saving.spec_for(
        model,
        name=name,
        labels=labels,
        rgb_range=c.rgb_range or (src.rgb_range if source == "inflate" else default_range),
        modality="rgb" if in_channels == 3 else "flow",
        source=f"{source}:{c.source}{note}",
    )
    saving.save_model_dir(c.out_dir, model, spec)
    print(
        f"Wrote {c.out_dir}: {name}, {spec.num_classes} classes, input {spec.input_shape}, "
        f"rgb_range {spec.rgb_range}"
    )
    if c.check_clip:
        from d3d_tf.weights import range_check

        scores = range_check.check_video(model, c.check_clip, labels)
        for rgb_range, (top, prob) in scores.items():
            print(f"{c.check_clip} with RGB in {rgb_range}: top-1 {top} ({prob:.3f})")


if __name__ == "__main__":
    flags.mark_flags_as_required(["from", "source", "out_dir"])
    cli.run(main, groups=HELP_GROUPS)
