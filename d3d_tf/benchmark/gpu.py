"""What one accelerator does with S3D-G and D3D, and how many CPU cores keep it fed: one table.

    python -m d3d_tf.benchmark.gpu                  # 64x224^2 (on a GPU: a few minutes)
    python -m d3d_tf.benchmark.gpu --size=tiny      # tiny network and clips: checks it runs
    python -m d3d_tf.benchmark.gpu --json=gpu.json  # also every number as JSON

Rows (each for --precisions x --modes, i.e. float32 / mixed_float16, without / with XLA):
  train  S3D-G   the training code's own step (`tasks.Classifier` through
                 `trainer.make_train_function`, loss scaling for mixed_float16), batch --batch
  train  D3D     the same for `Distiller` (d3d_tf.distill): the RGB student plus the frozen
                 flow teacher's forward pass
  infer  S3D-G   forward pass, batch 1: latency per clip (a D3D network at inference is an
                 S3D-G: its teacher is gone)
  data   RGB, RGB+flow  the training input pipeline (`benchmark.data`) at the same clip size:
                 clips/s with all this machine's cores and with one core
The last column, "cores to feed", is the CPU cores (one pipeline thread each) that deliver a
train row's clips/s: its clips/s over the one-core rate of the pipeline it reads (RGB for
S3D-G, RGB+flow for D3D). Timings are medians of --iters calls after warm-up calls (the first
compiles); a configuration that runs out of accelerator memory is reported as OOM.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile

from absl import app, flags

from d3d_tf.core import cli

PRECISIONS = ("float32", "mixed_float16")
MODES = ("function", "xla")


@dataclasses.dataclass(frozen=True)
class Size:
    """Clip and network size of a benchmark run (frames, pixels)."""
    name: str
    frames: int
    crop: int
    depth_multiplier: float
    num_classes: int
    batch: int
    final_endpoint: str = "Logits"
    stored: tuple = (64, 256, 341)   # synthetic stored videos: frames, height, width


SIZES = {
    "full": Size("64x224^2", 64, 224, 1.0, 400, 8),
    # A stem-only network on tiny clips: the command's own check on a CPU, not a measurement.
    "tiny": Size("tiny 4x32^2", 4, 32, 0.25, 4, 2, "Conv2d_2c_3x3", (8, 40, 53)),
}


def _network(size: Size, channels: int):
    from d3d_tf import models
    return models.build_classifier(
        "s3dg", num_classes=size.num_classes, input_shape=(size.frames, size.crop, size.crop,
                                                           channels),
        in_channels=channels, depth_multiplier=size.depth_multiplier,
        final_endpoint=size.final_endpoint, conv_impl="auto")


def _clips(size: Size, batch: int, seed: int = 0) -> dict:
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    shape = (batch, size.frames, size.crop, size.crop)
    return {"rgb": tf.constant(rng.uniform(-1, 1, (*shape, 3)), tf.float32),
            "flow": tf.constant(rng.uniform(-1, 1, (*shape, 2)), tf.float32),
            "label": tf.constant(rng.integers(0, size.num_classes, batch), tf.int32)}


def _with_policy(precision: str, fn):
    import keras

    from d3d_tf.training import trainer
    previous = keras.mixed_precision.global_policy()
    trainer.set_precision_policy(precision)
    try:
        return fn()
    finally:
        keras.mixed_precision.set_global_policy(previous)


def train_step_seconds(model: str, size: Size, *, precision: str, xla: bool,
                       iters: int = 3) -> float:
    """Median seconds of one train step of `model` (`S3D-G` or `D3D`) on `size.batch` clips,
    through the training code (`trainer.make_train_function`, default strategy)."""
    import keras
    import tensorflow as tf

    from d3d_tf.benchmark import latency
    from d3d_tf.distill.task import Distiller
    from d3d_tf.training import tasks, trainer

    def build():
        student = _network(size, 3)
        if model == "D3D":
            return Distiller(student, _network(size, 2), teacher_modality="flow",
                             global_batch_size=size.batch)
        return tasks.Classifier(student, global_batch_size=size.batch)

    task = _with_policy(precision, build)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    task.compile(optimizer=optimizer)
    task.optimizer.build(task.network.trainable_variables)
    step = trainer.make_train_function(tf.distribute.get_strategy(), task, jit_compile=xla)
    batch = _clips(size, size.batch)
    return latency.measure(lambda: float(step(batch)["total"]), warmup=2,
                           runs=iters).median_ms / 1e3


def inference_seconds(size: Size, *, precision: str, xla: bool, iters: int = 3) -> float:
    """Median seconds of the S3D-G forward pass on one clip."""
    import tensorflow as tf

    from d3d_tf.benchmark import latency
    network = _with_policy(precision, lambda: _network(size, 3))
    clip = _clips(size, 1)["rgb"]
    forward = tf.function(lambda x: tf.cast(network(x, training=False), tf.float32),
                          jit_compile=xla)
    return latency.measure(lambda: forward(clip).numpy(), warmup=2,
                           runs=iters).median_ms / 1e3


def pipeline_rates(size: Size, work_dir: str, *, num_batches: int = 10,
                   log=print) -> dict[str, dict]:
    """The training pipeline at `size`: {"RGB": result, "RGB+flow": result} of
    `benchmark.data.run_data_benchmark` (clips_per_s with all cores, clips_per_s_per_core)."""
    from d3d_tf.benchmark import data as throughput
    frames, height, width = size.stored
    cases = [throughput.DataBenchCase(f"pipeline {'+'.join(m)}", frames, height, width,
                                      size.frames, size.crop, size.batch, m)
             for m in (("rgb",), ("rgb", "flow"))]
    results = throughput.run_data_benchmark(work_dir, cases, num_videos=max(4, size.batch),
                                            num_batches=num_batches, warmup_batches=1, log=log)
    return dict(zip(("RGB", "RGB+flow"), results))


def _run_or_oom(fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, or None when the device runs out of memory."""
    import tensorflow as tf
    try:
        return fn(*args, **kwargs)
    except tf.errors.ResourceExhaustedError:
        return None


def run(size: Size, *, precisions=PRECISIONS, modes=MODES, iters: int = 3,
        num_batches: int = 10, log=print) -> list[dict]:
    """Every row of the table (see the module doc) as dicts: what, model, precision, xla,
    batch, seconds (per call; None = out of memory), clips_per_s, and for train rows
    pipeline and cores (CPU cores to feed it)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="d3d_bench_gpu_") as tmp:
        data = pipeline_rates(size, tmp, num_batches=num_batches, log=log)
    for precision in precisions:
        for mode in modes:
            xla = mode == "xla"
            for model, pipe in (("S3D-G", "RGB"), ("D3D", "RGB+flow")):
                s = _run_or_oom(train_step_seconds, model, size, precision=precision,
                                xla=xla, iters=iters)
                rate = size.batch / s if s else None
                per_core = data[pipe]["clips_per_s_per_core"]
                rows.append({"what": "train", "model": model, "precision": precision,
                             "xla": xla, "batch": size.batch, "seconds": s,
                             "clips_per_s": rate, "pipeline": pipe,
                             "cores": rate / per_core if rate else None})
                log(f"train {model} {precision} xla={xla}: "
                    + (f"{s:.4f} s/step" if s else "out of memory"))
            s = _run_or_oom(inference_seconds, size, precision=precision, xla=xla,
                            iters=iters)
            rows.append({"what": "infer", "model": "S3D-G", "precision": precision, "xla": xla,
                         "batch": 1, "seconds": s, "clips_per_s": 1 / s if s else None})
            log(f"infer S3D-G {precision} xla={xla}: "
                + (f"{1000 * s:.2f} ms/clip" if s else "out of memory"))
    for pipe, r in data.items():
        rows.append({"what": "data", "model": pipe, "precision": "", "xla": None,
                     "batch": size.batch, "seconds": size.batch / r["clips_per_s"],
                     "clips_per_s": r["clips_per_s"], "cores_used": r["cpu_count"],
                     "clips_per_s_per_core": r["clips_per_s_per_core"]})
    return rows


def device_line() -> str:
    """The accelerator (or CPU) the numbers come from."""
    import tensorflow as tf

    from d3d_tf.models import cpu_choices
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                 for g in gpus]
        return f"GPU: {', '.join(names)} (numbers for the first one)"
    return "no GPU: " + cpu_choices.describe(cpu_choices.cpu_flags())


def format_table(rows: list[dict], size: Size) -> str:
    """One table: train / infer rows per precision and XLA, then the pipeline's rows."""
    header = ("what", "model", "precision", "XLA", "batch", "ms/call", "clips/s",
              "cores to feed")
    table = []
    for r in rows:
        xla = "" if r["xla"] is None else ("yes" if r["xla"] else "no")
        ms = "OOM" if r["seconds"] is None else f"{1000 * r['seconds']:.1f}"
        rate = "" if r["clips_per_s"] is None else f"{r['clips_per_s']:.2f}"
        if r["what"] == "data":
            cores = (f"{r['clips_per_s_per_core']:.2f} clips/s on 1 core, {rate} on "
                     f"{r['cores_used']}")
        elif r.get("cores") is not None:
            cores = f"{r['cores']:.1f} ({r['pipeline']})"
        else:
            cores = ""
        table.append((r["what"], r["model"], r["precision"], xla, r["batch"], ms, rate, cores))
    rows_text = [tuple(str(c) for c in header)] + [tuple(str(c) for c in t) for t in table]
    widths = [max(len(t[i]) for t in rows_text) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in rows_text]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return (f"{device_line()}\n{size.name}, S3D-G depth {size.depth_multiplier:g}; train: "
            f"SGD step on batch {size.batch}; infer: one clip; cores to feed: CPU cores (one "
            "pipeline thread each) delivering the row's clips/s\n" + "\n".join(lines))


FLAGS = flags.FLAGS


def define_flags() -> None:
    """This command's flags (defined only when it runs: `benchmark`'s CLI has flags of the
    same names)."""
    flags.DEFINE_enum("size", "full", list(SIZES), "full: 64x224^2 S3D-G / D3D; tiny: a "
                      "stem-only network on 4x32^2 clips (checks the command runs).")
    flags.DEFINE_list("precisions", list(PRECISIONS), f"Of {PRECISIONS}.")
    flags.DEFINE_list("modes", list(MODES), f"Of {MODES}: tf.function without / with XLA.")
    flags.DEFINE_integer("batch", None, "Train-step batch (default 8 at full size, 2 tiny).",
                         lower_bound=1)
    flags.DEFINE_integer("iters", 5, "Timed calls per row (after 2 warm-up calls).",
                         lower_bound=1)
    flags.DEFINE_integer("num_batches", 10, "Timed pipeline batches per data row.",
                         lower_bound=1)
    flags.DEFINE_string("json", None, "Also write the rows as JSON to this file.")


def main(argv):
    del argv
    for name, values, allowed in (("precisions", FLAGS.precisions, PRECISIONS),
                                  ("modes", FLAGS.modes, MODES)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise app.UsageError(f"--{name}: unknown {unknown}; choose from {allowed}")
    size = SIZES[FLAGS.size]
    if FLAGS.batch:
        size = dataclasses.replace(size, batch=FLAGS.batch)

    def log(msg):
        print(f"[benchmark.gpu] {msg}", file=sys.stderr, flush=True)

    rows = run(size, precisions=FLAGS.precisions, modes=FLAGS.modes, iters=FLAGS.iters,
               num_batches=FLAGS.num_batches, log=log)
    print(format_table(rows, size), flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump({"size": dataclasses.asdict(size), "device": device_line(),
                       "cpu_count": os.cpu_count(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
