r"""Train a classifier, a D3D student, or fine-tune: `python -m d3d_tf.train --flagfile=...`.

    python -m d3d_tf.train --flagfile=configs/demo/teacher.flags
    python -m d3d_tf.train --task=distill --teacher=runs/teacher/model --train_data=... \
        --model_dir=runs/d3d

Rerunning with the same --model_dir resumes from its latest checkpoint. See docs/training.md.
"""
from __future__ import annotations

from absl import app, flags, logging

from d3d_tf import methods  # noqa: F401  every --task
from d3d_tf.core import cli, config_flags
from d3d_tf.training import trainer

FLAGS = flags.FLAGS
# Every field of TrainConfig is a flag of the same name, default and help text.
config_flags.define_flags(trainer.TrainConfig)


def config_from_flags() -> trainer.TrainConfig:
    """The TrainConfig of the parsed flags; ValueError for a missing required flag."""
    return config_flags.from_flags(trainer.TrainConfig)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    try:
        config = config_from_flags()
        trainer.validate(config)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    trainer.train(config)


if __name__ == "__main__":
    cli.run(main)
