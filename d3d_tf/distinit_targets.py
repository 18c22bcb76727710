"""Stores DistInit teacher logits for every frame with the records (precomputed targets).

    python -m d3d_tf.distinit_targets --records='data/unlabeled/train-*.tfrecord' \\
        --out_dir=data/unlabeled_resnet50 --teachers=ResNet50

Then train with `--task=distinit --distinit_precomputed --train_data=data/unlabeled_resnet50/*`
and the same `--distinit_teachers`. See docs/distinit.md.
"""
from __future__ import annotations

from absl import app

from d3d_tf.core import cli, config_flags
from d3d_tf.distinit.config import TargetsConfig

config_flags.define_flags(TargetsConfig)


def main(argv):
    del argv
    from d3d_tf.distinit import precompute_targets  # TensorFlow, once the flags are parsed
    try:
        precompute_targets.precompute(config_flags.from_flags(TargetsConfig))
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from e


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(TargetsConfig))
