"""Benchmarks. `python -m d3d_tf.benchmark --mode=data` times the tf.data input pipeline on a
synthetic TFRecord set (RGB-only and RGB+flow, demo and paper sizes) and prints a table."""
from __future__ import annotations

import json
import tempfile

from absl import app, flags

from d3d_tf.data import throughput

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "data", ["data"], "What to benchmark: data (tf.data clips/s).")
flags.DEFINE_bool("smoke", False, "Tiny sizes and few batches: checks that it runs (seconds).")
flags.DEFINE_integer("num_videos", 8, "Synthetic videos written per stored size.")
flags.DEFINE_integer("num_batches", 10, "Timed batches per case (after warm-up).")
flags.DEFINE_integer("warmup_batches", 2, "Untimed batches per case.")
flags.DEFINE_string("work_dir", None, "Folder for the synthetic TFRecords (default: a "
                    "temporary folder, deleted afterwards).")
flags.DEFINE_string("json", None, "Also write the results as JSON to this file ('-' = stdout).")


def main(argv):
    del argv
    cases = throughput.default_cases(smoke=FLAGS.smoke)
    num_videos = min(FLAGS.num_videos, 4) if FLAGS.smoke else FLAGS.num_videos
    num_batches = min(FLAGS.num_batches, 3) if FLAGS.smoke else FLAGS.num_batches
    warmup = min(FLAGS.warmup_batches, 1) if FLAGS.smoke else FLAGS.warmup_batches
    with tempfile.TemporaryDirectory(prefix="d3d_bench_") as tmp:
        results = throughput.run_data_benchmark(
            FLAGS.work_dir or tmp, cases, num_videos=num_videos, num_batches=num_batches,
            warmup_batches=warmup)
    print(throughput.format_table(results))
    if FLAGS.json:
        text = json.dumps({"mode": "data", "results": results}, indent=1)
        if FLAGS.json == "-":
            print(text)
        else:
            with open(FLAGS.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
