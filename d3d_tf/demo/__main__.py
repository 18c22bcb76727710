"""`python -m d3d_tf.demo`: the D3D demo end to end (`d3d_tf.demo.run`)."""
from d3d_tf.core import cli, config_flags
from d3d_tf.demo import run


def main(argv):
    del argv
    run.run(config_flags.from_flags(run.DemoConfig))


if __name__ == "__main__":
    __doc__ = run.__doc__  # absl's --help prints the main module's docstring
    config_flags.define_flags(run.DemoConfig)
    cli.run(main)  # user errors in one line (d3d_tf.core.cli)
