"""Throughput and latency of d3d_tf on this machine: one table per part, `--json` for all.

    python -m d3d_tf.benchmark                       # every part (several minutes)
    python -m d3d_tf.benchmark --parts=model,distill # some parts
    python -m d3d_tf.benchmark --smoke               # tiny sizes: checks that it all runs

Parts:
  model    S3D-G inference and train-step clips/s at 64x224^2 (batch 1 and the largest batch
           that fits) and at the demo size; eager vs tf.function vs XLA, float32 vs bfloat16,
           conv lowering 2d vs 3d (tf.function only); FLOPs per clip and achieved GFLOP/s;
           the first line says what `auto` picks on this CPU
  distill  D3D train step vs the RGB baseline's (the frozen flow teacher's forward pass is the
           extra cost)
  data     tf.data clips/s, RGB-only and RGB+flow, at the demo size and at 64x224^2, with all
           cores and on one core, and the cores one accelerator needs at --accelerator_step_s
           (default: an H100 ESTIMATE, not a measurement; docs/gpu.md)
  flow     TV-L1 frame pairs/s as `prepare` runs it, with 1 and 2 worker processes
  export   SavedModel vs TFLite float32 / int8 latency per clip (int8 and float32 alternating,
           1 and 2 threads, with int8's ratio to float32)
  profile  where a train step's time goes (TF profiler): convolution forward / backward, batch
           norm, layout copies (transpose, reshape, concat, slice, pad), pooling, optimizer,
           elementwise; per conv lowering, at 64x224^2 (batch 1) and the demo size (batch 8)
  torchvision  S3D-G and S3D against torchvision's S3D at 64x224^2, batch 1, inference and
           train step, in alternating processes with --threads threads each; times faster
           than torchvision, in float32 and (CPUs with native bf16) bfloat16 for both;
           GFLOP/s of each against a float32 matmul timed in turn (this CPU's ceiling), and
           what the 4x / 3x targets would need of it.
           Needs the [torchvision] extra; skipped with a line without it
  two_stream  seconds per video of the two-stream model end to end (decode, TV-L1 flow, flow
           S3D-G, RGB S3D-G, average) against D3D (decode, RGB S3D-G) on one video file
           (--video; default a synthetic 10-s 256x256 one), --iters rounds; the ratio
  cli      seconds every `python -m d3d_tf.<tool>` takes to print its --help and to refuse a
           misspelled flag, median of --iters runs each (--cli_tools: some tools only)
Timings are medians after a warm-up call; numbers depend on the machine and its load.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile

from absl import app, flags

from d3d_tf.benchmark import two_stream
from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field, section

FLAGS = flags.FLAGS
PARTS = ("model", "distill", "data", "flow", "export", "profile", "torchvision", "two_stream",
         "cli")


@dataclasses.dataclass
class ModelFlags:
    """model (and distill, export, profile: the demo size)."""
    modes: tuple = field(("eager", "function", "xla"), "model: execution modes.")
    precisions: tuple = field(("float32", "bfloat16"), "model: float32 and/or bfloat16.")
    conv_impls: tuple = field(("2d", "2d_spatial", "3d"), "model: conv lowerings compared side "
                              "by side (tf.function only; eager and XLA use this CPU's auto "
                              "choice).")
    max_batch: int = field(8, "model: cap of the 'largest batch that fits' search.")
    demo_frames: int = field(16, "Demo size: frames per clip.")
    demo_size: int = field(64, "Demo size: crop side, pixels.")
    demo_depth_multiplier: float = field(0.25, "Demo size: depth multiplier.")


@dataclasses.dataclass
class DataFlags:
    """data: the input pipeline."""
    num_videos: int = field(8, "data: synthetic videos written per stored size.")
    num_batches: int = field(10, "data: timed batches per case.")
    accelerator_step_s: float | None = field(None, "data: seconds of one accelerator's train "
                                             "step of --accelerator_batch clips, for the cores "
                                             "it needs (default 0.08 s: an H100 ESTIMATE for "
                                             "S3D-G at 64x224^2 in mixed float16, not a "
                                             "measurement; docs/gpu.md).", min=0)
    accelerator_batch: int | None = field(None, "data: clips of one accelerator's train step "
                                          "(default 8, with the H100 estimate).", min=1)


@dataclasses.dataclass
class TorchvisionFlags:
    threads: int = field(2, "torchvision: threads of each framework's process.")
    rounds: int = field(2, "torchvision: alternating rounds (each case once a round).")


@dataclasses.dataclass
class BenchmarkConfig:
    """The flags of `python -m d3d_tf.benchmark` (`d3d_tf.core.config_flags`), a section per
    part; main reads them as FLAGS."""
    parts: tuple = field(PARTS, f"Which parts to run, from {PARTS}.")
    smoke: bool = field(False, "Tiny sizes and few iterations: checks that it runs.")
    iters: int = field(3, "Timed calls per case (after one warm-up call).")
    json: str | None = field(None, "Also write every result as JSON to this file ('-' = "
                             "stdout).")
    model: ModelFlags = section(ModelFlags, "model, distill, export, profile")
    data: DataFlags = section(DataFlags, "data")
    torchvision: TorchvisionFlags = section(TorchvisionFlags, "torchvision")
    two_stream: two_stream.TwoStreamConfig = section(two_stream.TwoStreamConfig, "two_stream")
    cli_tools: tuple | None = field(None, "cli: the tools to time, e.g. d3d_tf.evaluate "
                                    "(default: every tool).")


config_flags.define_flags(BenchmarkConfig)


def _table(header, rows) -> str:
    rows = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _sizes():
    """(label, frames, size, depth_multiplier) of the full and the demo model."""
    if FLAGS.smoke:
        return [("tiny", 8, 32, 0.25)]
    return [("S3D-G 64x224^2", 64, 224, 1.0),
            (f"demo {FLAGS.demo_frames}x{FLAGS.demo_size}^2 d{FLAGS.demo_depth_multiplier}",
             FLAGS.demo_frames, FLAGS.demo_size, FLAGS.demo_depth_multiplier)]


def model_part(log) -> list[dict]:
    from d3d_tf.benchmark import model as speed

    results = []
    for label, frames, size, dm in _sizes():
        full = size >= 224
        batches = [1] if FLAGS.smoke else [1, 8] if not full else [1, None]
        for what in ("inference", "train_step"):
            for batch in batches:
                if batch is None:
                    batch = speed.largest_batch(what, cap=FLAGS.max_batch, frames=frames,
                                                size=size, depth_multiplier=dm)
                    if batch == 1:
                        continue
                for mode in FLAGS.modes:
                    for precision in FLAGS.precisions:
                        # At full size only batch 1 gets the whole matrix; larger batches run
                        # the fastest configuration (tf.function) to bound the benchmark's time.
                        if full and batch > 1 and mode != "function":
                            continue
                        impls = FLAGS.conv_impls if mode == "function" else ["auto"]
                        for impl in impls:
                            r = speed.measure(what, frames=frames, size=size, batch=batch,
                                              mode=mode, precision=precision, conv_impl=impl,
                                              depth_multiplier=dm,
                                              iters=1 if FLAGS.smoke else FLAGS.iters)
                            log(f"model {label} {what} b{batch} {mode} {precision} "
                                f"{r.conv_impl}: {r.clips_per_second:.2f} clips/s")
                            results.append({"case": label, **dataclasses.asdict(r)})
    return results


def model_table(results) -> str:
    from d3d_tf.models import cpu_choices

    return cpu_choices.describe(cpu_choices.cpu_flags()) + "\n" + _table(
        ("case", "what", "batch", "mode", "precision", "conv", "s/batch", "clips/s",
         "GFLOPs/clip", "GFLOP/s"),
        [(r["case"], r["what"], r["batch"], r["mode"], r["precision"], r["conv_impl"],
          f"{r['seconds_per_batch']:.3f}", f"{r['clips_per_second']:.2f}",
          f"{r['gflops_per_clip']:.2f}", f"{r['achieved_gflops']:.1f}") for r in results])


def distill_part(log) -> list[dict]:
    from d3d_tf.benchmark import model as speed

    results = []
    for label, frames, size, dm in _sizes():
        batch = 1 if size >= 224 or FLAGS.smoke else 8
        r = speed.measure_distillation(frames=frames, size=size, batch=batch,
                                       depth_multiplier=dm, iters=1 if FLAGS.smoke else FLAGS.iters)
        log(f"distill {label}: baseline {r['baseline']:.3f} s, d3d {r['d3d']:.3f} s, "
            f"flow teacher {r['teacher']:.3f} s")
        results.append({"case": label, "batch": batch, **r})
    return results


def distill_table(results) -> str:
    return _table(("case", "batch", "baseline s/step", "D3D s/step", "D3D / baseline",
                   "flow teacher s/step"),
                  [(r["case"], r["batch"], f"{r['baseline']:.3f}", f"{r['d3d']:.3f}",
                    f"{r['ratio']:.2f}", f"{r['teacher']:.3f}") for r in results])


def data_part(log) -> list[dict]:
    from d3d_tf.benchmark import data as throughput

    with tempfile.TemporaryDirectory(prefix="d3d_bench_") as tmp:
        return throughput.run_data_benchmark(
            tmp, throughput.default_cases(smoke=FLAGS.smoke),
            num_videos=min(FLAGS.num_videos, 4) if FLAGS.smoke else FLAGS.num_videos,
            num_batches=min(FLAGS.num_batches, 3) if FLAGS.smoke else FLAGS.num_batches,
            warmup_batches=1 if FLAGS.smoke else 2, log=log)


def flow_part(log) -> list[dict]:
    from d3d_tf.benchmark import data as throughput

    results = []
    sizes = [32] if FLAGS.smoke else [80, 224]
    for size in sizes:
        for workers in (1, 2):
            r = throughput.tvl1_pairs_per_second(size, workers,
                                                 pairs_per_worker=2 if FLAGS.smoke else 8)
            log(f"tvl1 {size}px {workers} workers: {r['pairs_per_s']:.2f} pairs/s")
            results.append(r)
    return results


def flow_table(results) -> str:
    return _table(("frame", "workers", "pairs", "pairs/s", "s/pair"),
                  [(f"{r['size']}x{r['size']}", r["workers"], r["pairs"],
                    f"{r['pairs_per_s']:.2f}", f"{1 / r['pairs_per_s']:.3f}") for r in results])


def export_part(log) -> list[dict]:
    from d3d_tf import models
    from d3d_tf.benchmark import latency
    from d3d_tf.deploy import common, saved_model, tflite
    from d3d_tf.models import saving

    results = []
    for label, frames, size, dm in _sizes():
        with tempfile.TemporaryDirectory(prefix="d3d_bench_export_") as tmp:
            net = models.build_classifier("s3dg", num_classes=400 if size >= 224 else 8,
                                          input_shape=(frames, size, size, 3),
                                          depth_multiplier=dm)
            spec = saving.spec_for(net, name="s3dg")
            model_dir = os.path.join(tmp, "model")
            saving.save_model_dir(model_dir, net, spec)
            runs = 2 if FLAGS.smoke else (3 if size >= 224 else 10)
            path = saved_model.export_saved_model(common.ExportConfig(
                model_dir=model_dir, out_dir=os.path.join(tmp, "sm"), model_name="m"))
            stats = latency.saved_model_latency(path, runs=runs)
            results.append({"case": label, "format": "SavedModel", "ms": stats.per_clip_ms,
                            "bytes": _dir_bytes(path)})
            tfl = {q: tflite.export_tflite(common.ExportConfig(
                model_dir=model_dir, out_dir=os.path.join(tmp, "tfl"), model_name="m",
                format="tflite", quantize=q, calibration_clips=4)) for q in ("float32", "int8")}
            # float32 and int8 called in turn, so that load changes fall on both alike.
            tfl_runs = 2 if FLAGS.smoke else (3 if size >= 224 else 300)
            for threads in (1, 2):
                f32, i8 = latency.tflite_alternating([tfl["float32"], tfl["int8"]],
                                                     num_threads=threads, runs=tfl_runs)
                for q, stats in (("float32", f32), ("int8", i8)):
                    results.append({"case": label, "format": f"TFLite {q}", "threads": threads,
                                    "ms": stats.per_clip_ms, "bytes": os.path.getsize(tfl[q]),
                                    "over_float32": stats.median_ms / f32.median_ms})
            for r in results[-5:]:
                log(f"export {label} {r['format']}: {r['ms']:.1f} ms/clip")
    return results


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def export_table(results) -> str:
    """SavedModel (TF's threads) and TFLite (XNNPACK, 1 and 2 threads) per clip; x float32:
    the TFLite model's latency over float32's at the same thread count."""
    return _table(("case", "format", "threads", "size (MB)", "ms/clip", "x float32"),
                  [(r["case"], r["format"], r.get("threads", "TF"), f"{r['bytes'] / 1e6:.2f}",
                    f"{r['ms']:.2f}", f"{r['over_float32']:.2f}" if "over_float32" in r else "")
                   for r in results])


def profile_part(log) -> list[dict]:
    from d3d_tf.benchmark import model as speed
    from d3d_tf.benchmark import profile

    results = []
    for label, frames, size, dm in _sizes():
        batch = 1 if size >= 224 or FLAGS.smoke else 8
        for impl in FLAGS.conv_impls:
            fn, _ = speed.make_step("train_step", frames=frames, size=size, batch=batch,
                                    conv_impl=impl, depth_multiplier=dm)
            r = profile.op_breakdown(fn, steps=1 if FLAGS.smoke else FLAGS.iters)
            log(f"profile {label} train_step b{batch} {impl}: {r['wall_s_per_step']:.3f} s/step, "
                + ", ".join(f"{k} {v:.3f} s" for k, v in r["categories"].items()))
            results.append({"case": label, "batch": batch, "conv_impl": impl, **r})
    return results


def profile_table(results) -> str:
    from d3d_tf.benchmark import profile

    names = [n for n, _ in profile.CATEGORIES] + [profile.OTHER]
    table = _table(
        ("case", "batch", "conv", "s/step", *names),
        [(r["case"], r["batch"], r["conv_impl"], f"{r['wall_s_per_step']:.3f}",
          *(f"{100 * r['categories'].get(n, 0.0) / r['op_s_per_step']:.1f}%" for n in names))
         for r in results])
    tops = [f"{r['case']} {r['conv_impl']}: " + ", ".join(
        f"{op} {100 * s / r['op_s_per_step']:.0f}%" for op, s in r["top_ops"][:6])
        for r in results]
    return (table + "\nShares of the ops' summed self-time (summed over threads). Top ops:\n"
            + "\n".join(tops))


def torchvision_part(log) -> list[dict]:
    from d3d_tf.benchmark import versus_torchvision as versus

    if not versus.torch_available():
        log("torchvision: skipped, torch / torchvision are not installed "
            "(pip install -e '.[torchvision]')")
        return []
    frames, size = (16, 32) if FLAGS.smoke else (64, 224)
    results = []
    for what in versus.WHATS:
        results += versus.compare(what, frames=frames, size=size, batch=1,
                                  threads=FLAGS.threads, rounds=1 if FLAGS.smoke else FLAGS.rounds,
                                  iters=1 if FLAGS.smoke else FLAGS.iters,
                                  cases=versus.default_cases(), log=log)
    return versus.with_gflops(results)


def torchvision_table(results) -> str:
    from d3d_tf.benchmark import versus_torchvision as versus

    if not results:
        return "skipped: torch / torchvision are not installed (pip install -e '.[torchvision]')"
    r0 = results[0]
    table = _table(
        ("what", "framework", "model", "precision", "s/call", "rounds (s)", "GFLOP/s",
         "of matmul", "x torchvision"),
        [(r["what"], r["framework"], r["model"], r["precision"], f"{r['seconds']:.3f}",
          " ".join(f"{s:.3f}" for s in r["rounds"]), f"{r['gflops_per_s']:.1f}",
          f"{r['of_matmul']:.0%}" if r["of_matmul"] is not None else "",
          f"{r['torchvision_over_this']:.2f}" if r["torchvision_over_this"] else "")
         for r in results])
    needs = [f"{n['times']:g}x torchvision's {n['what']} needs {n['seconds']:.3f} s: "
             f"{n['gflops_per_s']:.1f} GFLOP/s, {n['of_matmul']:.0%} of the matmul's"
             for n in versus.target_needs(results)]
    return (f"{r0['frames']}x{r0['size']}^2, batch {r0['batch']}, {r0['threads']} threads per "
            "process, median of the rounds' medians; x torchvision: against torchvision at "
            "the same precision; GFLOP/s: 2 x MACs (a train step 3 forward passes) per second; "
            f"machine matmul: a {versus.MATMUL_N}^2 float32 tf.matmul, this CPU's ceiling\n"
            + table + "".join(f"\n{line}" for line in needs))


def two_stream_part(log) -> list[dict]:
    config = config_flags.from_flags(two_stream.TwoStreamConfig)
    if FLAGS.smoke:
        config = two_stream.smoke_config(config)
    return two_stream.run_two_stream_benchmark(config, repeats=1 if FLAGS.smoke else FLAGS.iters,
                                               log=log)


def cli_part(log) -> list[dict]:
    from d3d_tf.benchmark import cli_help

    return cli_help.run_cli_benchmark(FLAGS.cli_tools, repeats=1 if FLAGS.smoke else FLAGS.iters,
                                      log=log)


def cli_table(results) -> str:
    return _table(("tool", "--help s", "misspelled flag s"),
                  [(r["tool"], f"{r['help_s']:.2f}", f"{r['misspelled_s']:.2f}")
                   for r in results])


def data_table(results) -> str:
    from d3d_tf.benchmark import data as throughput

    return throughput.format_table(
        results, FLAGS.accelerator_step_s or throughput.H100_ESTIMATE_STEP_S,
        FLAGS.accelerator_batch or throughput.H100_ESTIMATE_BATCH)


def main(argv):
    del argv
    unknown = [p for p in FLAGS.parts if p not in PARTS]
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; choose from {PARTS}")

    def log(msg):
        print(f"[benchmark] {msg}", file=sys.stderr, flush=True)

    runners = {
        "model": (model_part, model_table),
        "distill": (distill_part, distill_table),
        "data": (data_part, data_table),
        "flow": (flow_part, flow_table),
        "export": (export_part, export_table),
        "profile": (profile_part, profile_table),
        "torchvision": (torchvision_part, torchvision_table),
        "two_stream": (two_stream_part, two_stream.format_table),
        "cli": (cli_part, cli_table),
    }
    everything = {"smoke": FLAGS.smoke, "cpu_count": os.cpu_count()}
    tables = []
    for part in FLAGS.parts:
        run, table = runners[part]
        results = run(log)
        everything[part] = results
        tables.append(f"## {part}\n{table(results)}")
        print(tables[-1] + "\n", flush=True)
    if FLAGS.json:
        text = json.dumps(everything, indent=1, default=float)
        if FLAGS.json == "-":
            print(text)
        else:
            with open(FLAGS.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main, groups=cli.help_groups(BenchmarkConfig))
