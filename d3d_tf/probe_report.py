r"""Probe runs -> the paper's Table 1, Fig. 4 and Fig. 5: `python -m d3d_tf.probe_report`.

    python -m d3d_tf.probe_report --probes=probes/teacher,probes/s3dg,probes/d3d \
        --out_dir=probes/report [--fig5=probes/s3dg,probes/d3d[,probes/d3d_ft]]

Writes OUT/report.md: Table 1 at 3A; Fig. 4 (OUT/fig4_epe_per_layer.png) when a run swept
several layers; Fig. 5 (OUT/fig5_flow_3a.png) from two or more runs (a row each: the appendix's
Fig. 6 adds the fine-tuned D3D) that kept example predictions of the same clips. See docs/probes.md.
"""
from __future__ import annotations

import dataclasses

from absl import app

from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field
from d3d_tf.probes import probe_tables


@dataclasses.dataclass
class ReportConfig:
    """Flags of `python -m d3d_tf.probe_report` (`d3d_tf.core.config_flags`)."""
    probes: tuple = field(help="probe.json files or the --out_dir folders of "
                          "python -m d3d_tf.probe runs, comma-separated.")
    out_dir: str = field(help="Where report.md and the PNGs go (created).")
    endpoint: str = field("3A", "Layer of Table 1 and Fig. 5 (paper: 3A).")
    fig5: tuple = field((), "Two or more probe folders whose predicted flows Fig. 5 shows, a "
                        "row each in this order (default: the first two frozen RGB runs; "
                        "appendix Fig. 6: S3D-G, D3D, fine-tuned D3D).")
    fig5_clips: int = field(3, "Clips (columns) of Fig. 5 (appendix Fig. 6: more).")


config_flags.define_flags(ReportConfig)


def main(argv):
    del argv
    try:
        config = config_flags.from_flags(ReportConfig)
        if config.fig5 and len(config.fig5) < 2:
            raise ValueError(f"--fig5 needs two or more probe folders, got {len(config.fig5)}")
        if config.fig5_clips < 1:
            raise ValueError(f"--fig5_clips must be at least 1, got {config.fig5_clips}")
        path = probe_tables.write_report(config.probes, config.out_dir,
                                          endpoint=config.endpoint, fig5_runs=config.fig5,
                                          fig5_clips=config.fig5_clips)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    print(path)


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(ReportConfig))
