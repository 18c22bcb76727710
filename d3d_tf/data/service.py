"""Preprocessing on other hosts: the training pipeline through a tf.data service.

An accelerator can consume clips faster than its host's CPUs decode and augment them
(`python -m d3d_tf.benchmark --parts=data` prints the cores one accelerator needs). TensorFlow's
tf.data service moves that work to other machines: a dispatcher (one process) hands each
registered pipeline's work to workers (any number of processes, on any hosts), and the trainer
reads finished batches from them over gRPC.

    python -m d3d_tf.data_service --dispatcher --port=5050                 # one host
    python -m d3d_tf.data_service --worker --dispatcher_address=HOST:5050  # each CPU host
    python -m d3d_tf.train ... --data_service=grpc://HOST:5050             # the trainer(s)

The trainer's pipeline is the same `pipeline.make_dataset` graph (the workers run it; it holds
no Python code, so they need only TensorFlow and read the shards at the same paths, e.g. a
shared file system or gs://). Processing mode `distributed_epoch` (`PROCESSING_MODE`): the
dispatcher splits the pipeline's source, its list of shard files, among the workers as they ask
for work, so every clip is produced once per epoch in all, and the split adapts to slow and
added workers. The alternative, `parallel_epochs`, has every worker run the whole pipeline: with
N workers each video would come N times per epoch.

Each trainer input pipeline (one per host of a multi-host run, reading its own share of the
shards: `pipeline.make_dataset` with an `InputContext`) gets its own anonymous job, so several
trainers and runs can share one dispatcher. Elements come in the order the workers finish
them: a seeded run through the service is not bit-for-bit repeatable.
"""
from __future__ import annotations

import re
import socket

import tensorflow as tf

PROCESSING_MODE = "distributed_epoch"
_ADDRESS = re.compile(r"^(grpc://)?([A-Za-z0-9.\-_\[\]:]+):(\d+)$")


def parse_address(address: str, flag: str = "--data_service") -> str:
    """`grpc://host:port` for `address` (`grpc://host:port` or `host:port`); ValueError
    naming `flag` otherwise."""
    match = _ADDRESS.match(address.strip()) if address else None
    if not match:
        raise ValueError(f"{flag}={address!r}: expected the dispatcher as grpc://host:port "
                         "(python -m d3d_tf.data_service --dispatcher prints it)")
    return f"grpc://{match.group(2)}:{match.group(3)}"


def distribute(dataset: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """`dataset` run by the workers of the tf.data service at `address` (`distributed_epoch`:
    each element once per epoch over all workers); the trainer reads their output."""
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=PROCESSING_MODE, service=parse_address(address)))


def start_dispatcher(port: int = 0, work_dir: str | None = None
                     ) -> tf.data.experimental.service.DispatchServer:
    """A dispatcher on `port` (0: any free port; `.target` is its grpc://host:port).
    work_dir: where it journals its state, so that a restarted dispatcher resumes its jobs."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher_address: str, port: int = 0, host: str | None = None
                 ) -> tf.data.experimental.service.WorkerServer:
    """A worker serving the dispatcher at `dispatcher_address` (grpc://host:port or host:port).
    host: the name trainers reach this worker by (default this machine's name); with `port` 0
    a free port is picked."""
    dispatcher = parse_address(dispatcher_address, "--dispatcher_address")[len("grpc://"):]
    host = host or socket.getfqdn()
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, port=port, worker_address=f"{host}:%port%")
    return tf.data.experimental.service.WorkerServer(config)
