"""Run a tf.data service dispatcher or worker, for `python -m d3d_tf.train --data_service`.

    python -m d3d_tf.data_service --dispatcher --port=5050
    python -m d3d_tf.data_service --worker --dispatcher_address=HOST:5050 --port=5051

The process serves until it is stopped (Ctrl-C). Workers read the training shards at the paths
the trainer names, so they need the same files (a shared file system or gs://). See
`d3d_tf.data.service` and docs/gpu.md.
"""
from __future__ import annotations

import dataclasses
import sys

from absl import app

from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class ServiceConfig:
    """The flags of `python -m d3d_tf.data_service` (`d3d_tf.core.config_flags`)."""
    dispatcher: bool = field(False, "Run the dispatcher (one per cluster).")
    worker: bool = field(False, "Run a worker (any number, on any hosts).")
    port: int = field(0, "Port to serve on (0: a free one, printed).", min=0)
    dispatcher_address: str | None = field(None, "--worker: the dispatcher, host:port.")
    host: str | None = field(None, "--worker: the name trainers reach this host by (default: "
                             "its fully qualified name).")
    work_dir: str | None = field(None, "--dispatcher: folder for its journal, so that a "
                                 "restarted dispatcher resumes its jobs (optional).")


config_flags.define_flags(ServiceConfig)


def main(argv):
    del argv
    from d3d_tf.data import service

    c = config_flags.from_flags(ServiceConfig)
    if c.dispatcher == c.worker:
        raise app.UsageError("give exactly one of --dispatcher and --worker")
    if c.dispatcher:
        server = service.start_dispatcher(c.port, c.work_dir)
        print(f"tf.data service dispatcher at {server.target}: train with "
              f"--data_service={server.target} (host name as the trainers reach it)",
              flush=True)
    else:
        if not c.dispatcher_address:
            raise app.UsageError("--worker needs --dispatcher_address=HOST:PORT")
        server = service.start_worker(c.dispatcher_address, c.port, c.host)
        print(f"tf.data service worker for {c.dispatcher_address} serving", flush=True)
    try:
        server.join()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(ServiceConfig))
