"""Converts public pretrained checkpoints into a d3d_tf model directory.

    # TF-Slim S3D-G / S3D / I3D checkpoints, e.g. the released D3D models (which take [0,1] RGB)
    python -m d3d_tf.convert_weights --from=slim --checkpoint=d3d/model.ckpt \\
        --num_classes=400 --labels=kinetics400.txt --out=models/d3d_k400

    # torchvision's S3D (a state_dict saved with torch.save; needs the `torch` extra)
    python -m d3d_tf.convert_weights --from=torchvision --checkpoint=s3d.pth \\
        --num_classes=400 --out=models/s3d_tv

The model directory (`model.json` + `weights.npz`) works with evaluate, export and predict.
See docs/weights.md.
"""

from __future__ import annotations

from absl import flags, logging

from d3d_tf import cli
from d3d_tf.models import saving
from d3d_tf.weights import slim as slim_import

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "from",
    None,
    ["slim", "torchvision"],
    "Checkpoint format: a TF-Slim TF1 "
    "checkpoint (S3D-G/S3D/I3D, D3D release) or a torchvision S3D state_dict.",
)
flags.DEFINE_string(
    "checkpoint",
    None,
    "Slim: checkpoint prefix (model.ckpt-N) or its directory. "
    "torchvision: the .pth file written by torch.save(model.state_dict()).",
)
flags.DEFINE_string("out", None, "Model directory to write (model.json + weights.npz).")
flags.DEFINE_integer(
    "num_classes",
    None,
    "Expected number of classes; checked against the "
    "checkpoint's logits layer (taken from it when omitted).",
)
flags.DEFINE_enum(
    "model",
    None,
    ["s3dg", "s3d", "i3d"],
    "Slim only: the preset the checkpoint "
    "should be; inferred from its variables when omitted, cross-checked otherwise.",
)
flags.DEFINE_enum(
    "input_range",
    None,
    list(saving.INPUT_RANGES),
    "How float RGB is scaled for "
    "this model, recorded in model.json. Default: [0,1] for slim (the released "
    "D3D checkpoints; slim's own training used [-1,1]) and [0,1] for torchvision "
    "(which additionally expects its Kinetics mean/std, see docs/weights.md).",
)
flags.DEFINE_string("labels", None, "Optional text file with one class name per line.")
flags.DEFINE_integer(
    "frames", None, "Clip length recorded in model.json (default 64 for slim, 16 for torchvision)."
)
flags.DEFINE_integer("size", 224, "Crop size (pixels) recorded in model.json.")
flags.DEFINE_boolean(
    "use_ema", False, "Slim: load ExponentialMovingAverage shadows where the checkpoint has them."
)
flags.DEFINE_string(
    "scope",
    None,
    "Slim: top variable scope (default: found from the checkpoint, InceptionV1 for slim's s3dg).",
)
flags.DEFINE_multi_string(
    "ignore",
    [],
    "Slim: regular expression of checkpoint variables to "
    "skip on purpose (repeatable), e.g. a distillation teacher's scope.",
)


def _read_labels(path):
    if not path:
        return []
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def main(argv):
    del argv
    source = getattr(FLAGS, "from")
    labels = _read_labels(FLAGS.labels)
    if source == "slim":
        if not FLAGS.use_ema and slim_import.has_ema(FLAGS.checkpoint):
            logging.info(
                "The checkpoint has ExponentialMovingAverage shadows; pass --use_ema "
                "to load them (often the better weights)."
            )
        cfg = slim_import.SlimImportConfig(
            checkpoint=FLAGS.checkpoint,
            model=FLAGS.model,
            num_classes=FLAGS.num_classes,
            input_shape=(FLAGS.frames or 64, FLAGS.size, FLAGS.size, None),
            scope=FLAGS.scope,
            use_ema=FLAGS.use_ema,
            ignore=tuple(FLAGS.ignore),
        )
        model, info = slim_import.import_checkpoint(cfg, log=logging.info)
        name = info["preset"]
        note = ""
    else:
        from d3d_tf.weights import torch_s3d

        state = torch_s3d.read_state_dict(FLAGS.checkpoint)
        model = torch_s3d.import_state_dict(
            state,
            num_classes=FLAGS.num_classes,
            input_shape=(FLAGS.frames or 16, FLAGS.size, FLAGS.size, 3),
            source=FLAGS.checkpoint,
            log=logging.info,
        )
        name = torch_s3d.PRESET
        note = f" (expects (x - {torch_s3d.KINETICS_MEAN}) / {torch_s3d.KINETICS_STD} on [0,1])"
    in_channels = model.d3d_config.in_channels
    spec = saving.spec_for(
        model,
        name=name,
        labels=labels,
        input_range=FLAGS.input_range or "[0,1]",
        modality="rgb" if in_channels == 3 else "flow",
        source=f"{source}:{FLAGS.checkpoint}{note}",
    )
    saving.save_model_dir(FLAGS.out, model, spec)
    print(
        f"Wrote {FLAGS.out}: {name}, {spec.num_classes} classes, input {spec.input_shape}, "
        f"input_range {spec.input_range}"
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["from", "checkpoint", "out"])
    cli.run(main)
