"""Run a tf.data service dispatcher or worker, for `python -m d3d_tf.train --data_service`.

    python -m d3d_tf.data_service --dispatcher --port=5050
    python -m d3d_tf.data_service --worker --dispatcher_address=HOST:5050 --port=5051

The process serves until it is stopped (Ctrl-C). Workers read the training shards at the paths
the trainer names, so they need the same files (a shared file system or gs://). See
`d3d_tf.data.service` and docs/gpu.md.
"""
from __future__ import annotations

import sys

from absl import app, flags

from d3d_tf.core import cli

FLAGS = flags.FLAGS
flags.DEFINE_bool("dispatcher", False, "Run the dispatcher (one per cluster).")
flags.DEFINE_bool("worker", False, "Run a worker (any number, on any hosts).")
flags.DEFINE_integer("port", 0, "Port to serve on (0: a free one, printed).", lower_bound=0)
flags.DEFINE_string("dispatcher_address", None, "--worker: the dispatcher, host:port.")
flags.DEFINE_string("host", None, "--worker: the name trainers reach this host by (default: "
                    "its fully qualified name).")
flags.DEFINE_string("work_dir", None, "--dispatcher: folder for its journal, so that a "
                    "restarted dispatcher resumes its jobs (optional).")


def main(argv):
    del argv
    from d3d_tf.data import service

    if FLAGS.dispatcher == FLAGS.worker:
        raise app.UsageError("give exactly one of --dispatcher and --worker")
    if FLAGS.dispatcher:
        server = service.start_dispatcher(FLAGS.port, FLAGS.work_dir)
        print(f"tf.data service dispatcher at {server.target}: train with "
              f"--data_service={server.target} (host name as the trainers reach it)",
              flush=True)
    else:
        if not FLAGS.dispatcher_address:
            raise app.UsageError("--worker needs --dispatcher_address=HOST:PORT")
        server = service.start_worker(FLAGS.dispatcher_address, FLAGS.port, FLAGS.host)
        print(f"tf.data service worker for {FLAGS.dispatcher_address} serving", flush=True)
    try:
        server.join()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
