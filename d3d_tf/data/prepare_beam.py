"""`prepare` as an Apache Beam pipeline: one element per output shard (`pip install -e '.[beam]'`).

    python -m d3d_tf.prepare ... --beam_options="--runner=DirectRunner --direct_num_workers=2 \
        --direct_running_mode=multi_processing"

The launcher validates the inputs and the output folder as `prepare_lib.prepare` does, takes
the split's lock, and runs a pipeline whose elements are this host's unfinished shards:

    Create([(k, videos of shard k)]) -> Reshuffle -> Map(prepare_lib.write_one_shard)

Each element decodes, computes flow and encodes its videos and writes its shard with the
code of `prepare`, so the shards and their sidecars are byte-identical to `prepare`'s, and a
shard is the unit of resumption (a rerun, or the engine's retry of an element, skips finished
shards). When the pipeline is done the launcher runs the ordinary `prepare_lib.prepare`,
which reuses every shard and writes `{split}_info.json`. The same code runs on Dataflow,
Flink or Spark (`--runner=...`) when `out_dir` and the videos are a file system mounted on
every worker (NFS, GCS FUSE, ...): the shards are written with local file operations.
See docs/data_scale.md.
"""
from __future__ import annotations

import shlex

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from d3d_tf.data import prepare_lib
from d3d_tf.data.datasets import VideoEntry


def _write_shard(element: tuple, config: prepare_lib.PrepareConfig, label_ids: dict) -> dict:
    k, shard_entries = element
    return prepare_lib.write_one_shard(config, k, shard_entries, label_ids)


def prepare(entries: list[VideoEntry], labels: list[str], config: prepare_lib.PrepareConfig,
            beam_options: str | list[str] = "") -> prepare_lib.PrepareSummary:
    """Writes what `prepare_lib.prepare(entries, labels, config)` writes, as a Beam pipeline.

    Args:
      beam_options: Beam pipeline options, a command-line string or a list
        (e.g. "--runner=DirectRunner --direct_num_workers=2"); default: the DirectRunner.
    Returns:
      The summary of the finishing `prepare_lib.prepare` run (every shard reused).
    """
    args = shlex.split(beam_options) if isinstance(beam_options, str) else list(beam_options)
    options = PipelineOptions(args)
    chosen, label_ids = prepare_lib.select(entries, labels, config)
    with prepare_lib.hold_split(config):
        prepare_lib.check_out_dir(config, labels)
        shards = prepare_lib.assign_shards(chosen, config.num_shards, config.shuffle_seed)
        pending, _ = prepare_lib.plan(config, shards, chosen, label_ids)
        if pending:
            with beam.Pipeline(options=options) as p:
                _ = (p
                     | "Shards" >> beam.Create([(k, shards[k]) for k in pending])
                     | "Spread" >> beam.Reshuffle()  # one shard per worker, not one bundle
                     | "Write" >> beam.Map(_write_shard, config=config, label_ids=label_ids))
    return prepare_lib.prepare(entries, labels, config)
