r"""Train a classifier, a D3D student, or fine-tune: `python -m d3d_tf.train --flagfile=...`.

    python -m d3d_tf.train --flagfile=configs/demo/teacher.flags
    python -m d3d_tf.train --task=distill --teacher=runs/teacher/model --train_data=... \
        --model_dir=runs/d3d

Rerunning with the same --model_dir resumes from its latest checkpoint. See docs/training.md.
`--help` lists the common flags and those of the chosen `--task`, by section; `--helpfull`
every flag. TensorFlow is imported once the flags are parsed.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from d3d_tf import methods
from d3d_tf.core import cli, config_flags

FLAGS = flags.FLAGS


def config_from_flags():
    """The TrainConfig of the parsed flags; ValueError for a missing required flag."""
    return config_flags.from_flags(methods.TrainConfig)


def task_in(argv) -> str:
    """The --task of a command line (`classify` when not given on it)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
        if arg == "--task" and i + 1 < len(argv):
            return argv[i + 1]
    return "classify"


def _other_sections(argv) -> set[str]:
    """The help titles of the methods' sections other than the chosen --task's."""
    return {m.SECTION[2] for m in methods.METHODS} - {methods.section_of(task_in(argv))}


def help_groups(argv) -> list[tuple[str, list[str]]]:
    """`--help`'s sections: the common ones and the chosen --task's own (if it has one)."""
    others = _other_sections(argv)
    return [(t, names) for t, names in config_flags.flag_groups(methods.TrainConfig)
            if t not in others]


# Every setting of the TrainConfig (each method's section too) is a flag of the same name,
# default and help text. The other tasks' flags belong to d3d_tf.methods: `--helpfull` lists
# them, `--help` does not.
_HIDDEN = [n for t, names in config_flags.flag_groups(methods.TrainConfig)
           if t in _other_sections(sys.argv) for n in names]
config_flags.define_flags(methods.TrainConfig, exclude=_HIDDEN)
config_flags.define_flags(methods.TrainConfig, module_name=methods.__name__)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from d3d_tf.training import trainer  # TensorFlow, once the flags are parsed
    methods.register_tasks()
    try:
        config = config_from_flags()
        trainer.validate(config)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    trainer.train(config)


if __name__ == "__main__":
    cli.run(main, groups=help_groups(sys.argv))
