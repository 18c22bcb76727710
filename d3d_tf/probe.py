r"""Motion probes: train a flow decoder on a network's endpoint and measure its EPE (D3D §3).

    python -m d3d_tf.probe --model_dir=runs/d3d --endpoints=3A --decoder=pwc \
        --train_data='records/train-*.tfrecord' --eval_data='records/test-*.tfrecord' \
        --out_dir=probes/d3d_pwc_frozen
    python -m d3d_tf.probe --model_dir=runs/teacher --modality=flow ...   # teacher baseline
    python -m d3d_tf.probe ... --endpoints=all --finetune                   # Fig. 4, "ft"

Writes OUT/probe.json (EPE and all-zeros EPE per endpoint, per-clip EPEs) and TensorBoard
logs under OUT/<endpoint>/. `python -m d3d_tf.probe_report` lays several runs out as the
paper's Table 1 and Figs. 4-5. See docs/probes.md.
"""
from __future__ import annotations

from absl import app, logging

from d3d_tf.core import cli, config_flags
from d3d_tf.probes.config import ProbeConfig

config_flags.define_flags(ProbeConfig)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from d3d_tf.probes import task as probe  # TensorFlow, once the flags are parsed
    try:
        config = config_flags.from_flags(ProbeConfig)
        probe.validate(config)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    probe.run(config)


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(ProbeConfig))
