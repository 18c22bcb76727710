"""First-layer filters over time and a t-SNE of pooled features of a video ResNet.

    python -m d3d_tf.representation --model_dir=runs/distinit_r3d/model \\
        --data='data/hmdb51_split1/test-*.tfrecord' --out_dir=report/distinit_r3d

See docs/distinit.md (Figs. 3-5 of DistInit).
"""
from __future__ import annotations

from absl import app

from d3d_tf.core import cli, config_flags
from d3d_tf.distinit.config import ReportConfig

config_flags.define_flags(ReportConfig)


def main(argv):
    del argv
    from d3d_tf.distinit import representation_report  # TensorFlow, once the flags are parsed
    try:
        out = representation_report.write_report(config_flags.from_flags(ReportConfig))
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e)) from e
    print(out)


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(ReportConfig))
