"""d3d_tf's S3D-G and S3D against torchvision's S3D, side by side on this machine (used by
`python -m d3d_tf.benchmark --parts=torchvision`; needs the `[torchvision]` extra).

Each measurement runs in a fresh process (TensorFlow and PyTorch in one process would share
oneDNN's and OpenMP's thread pools), and the frameworks alternate round after round, so a
change of machine load hits all of them alike. Every process pins the same number of threads.

    rows = compare("inference", frames=64, size=224, batch=1, threads=2, rounds=2, iters=3)

Cases: `d3d_tf s3dg` (the project's S3D-G, gated), `d3d_tf s3d_torchvision` (the preset with
torchvision's exact architecture: no gating, separable stem, BN with gamma) and `torchvision
s3d` (`torchvision.models.video.s3d`, random weights), in float32; on CPUs with native
bfloat16 also S3D-G and torchvision in bfloat16 (compared with each other). Inputs are random clips
`[B,T,H,W,3]` in [-1,1] (PyTorch: `[B,3,T,H,W]`); a train step is forward, cross-entropy,
backward and one SGD (momentum 0.9) update.

The `machine matmul` case, timed in turn with the others, is this CPU's ceiling: a
`MATMUL_N`-square float32 `tf.matmul` with the same threads. `with_gflops` sets every row's
GFLOP/s against it, and `target_needs` says how much of it the targets (`TARGETS`: times
faster than torchvision) would take: a direct convolution does not beat the CPU's matmul,
so a target that needs more than the matmul reaches is out of reach without fewer FLOPs.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys

# (framework, model, precision); bfloat16 is Keras `mixed_bfloat16` and `torch.autocast`.
CASES = (("d3d_tf", "s3dg", "float32"), ("d3d_tf", "s3d_torchvision", "float32"),
         ("torchvision", "s3d", "float32"))
BF16_CASES = (("d3d_tf", "s3dg", "bfloat16"), ("torchvision", "s3d", "bfloat16"))
WHATS = ("inference", "train_step")
MATMUL_CASE = ("machine", "matmul", "float32")
MATMUL_N = 2048
# Times faster than torchvision that the project aims at (docs/performance.md).
TARGETS = {"inference": 4.0, "train_step": 3.0}


def default_cases() -> tuple:
    """The float32 cases, and bfloat16 for both frameworks where this CPU computes it natively
    (AVX512-BF16 / AMX: where `--precision=auto` may pick it)."""
    from d3d_tf.models import cpu_choices

    native = bool(cpu_choices.has_native_bfloat16(cpu_choices.cpu_flags()))
    return CASES + (BF16_CASES if native else ()) + (MATMUL_CASE,)


def torch_available() -> bool:
    """Whether torch and torchvision are installed (found, not imported: importing torch
    into a process that holds TensorFlow can crash it)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))


def _tf_threads(threads: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _seconds_d3d(model: str, precision: str, what: str, frames: int, size: int, batch: int,
                 threads: int, iters: int) -> float:
    _tf_threads(threads)
    import numpy as np

    from d3d_tf.benchmark import model as speed

    fn, _ = speed.make_step(what, name=model, frames=frames, size=size, batch=batch,
                            mode="function", precision=precision, depth_multiplier=1.0)
    return speed.median_seconds(lambda: np.asarray(fn()), warmup=1, iters=iters)


def _seconds_torch(precision: str, what: str, frames: int, size: int, batch: int,
                   threads: int, iters: int) -> float:
    import torch
    import torchvision

    from d3d_tf.benchmark import latency

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torchvision.models.video.s3d(weights=None, num_classes=400)
    if size < 224:  # its head pools a fixed 2x7x7 window: small smoke clips need an adaptive one
        net.avgpool = torch.nn.AdaptiveAvgPool3d(1)
    clips = torch.rand(batch, 3, frames, size, size) * 2 - 1
    labels = torch.randint(0, 400, (batch,))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")

    if what == "inference":
        net.eval()

        def step():
            with torch.no_grad(), autocast():
                return net(clips)
    else:
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = net(clips)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            optimizer.step()
            return loss.item()
    return latency.measure(step, warmup=1, runs=iters).median_ms / 1e3


def _seconds_matmul(threads: int, iters: int) -> float:
    _tf_threads(threads)
    import numpy as np
    import tensorflow as tf

    from d3d_tf.benchmark import model as speed

    a, b = (tf.random.normal([MATMUL_N, MATMUL_N], seed=s) for s in (1, 2))
    product = tf.function(lambda: tf.matmul(a, b))
    return speed.median_seconds(lambda: np.asarray(product()), warmup=1, iters=3 * iters)


def measure_one(case: dict) -> float:
    """Seconds per call of one case (`framework`, `model`, `precision`, `what`, `frames`,
    `size`, `batch`, `threads`, `iters`), in this process."""
    args = {k: case[k] for k in ("precision", "what", "frames", "size", "batch", "threads",
                                 "iters")}
    if case["framework"] == "machine":
        return _seconds_matmul(case["threads"], case["iters"])
    if case["framework"] == "torchvision":
        return _seconds_torch(**args)
    return _seconds_d3d(case["model"], **args)


def _in_subprocess(case: dict) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(case["threads"])}
    from d3d_tf.models import cpu_choices  # imports TensorFlow: only here, in the parent

    if cpu_choices.capped_at_avx2():  # PyTorch's own vector kernels obey another variable
        env.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    done = subprocess.run([sys.executable, "-m", __name__, json.dumps(case)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RuntimeError(f"{case['framework']} {case['model']} {case['precision']} "
                           f"{case['what']} failed: {last[0]}")
    return float(done.stdout.strip().splitlines()[-1])


def compare(what: str, *, frames: int, size: int, batch: int = 1, threads: int = 2,
            rounds: int = 2, iters: int = 3, cases=CASES, log=None,
            measure=_in_subprocess) -> list[dict]:
    """One row per case: the median over `rounds` of each process's median seconds per call,
    the per-round values, and `torchvision_over_this` (torchvision's seconds at the same
    precision / this case's: how many times faster than torchvision; 1.0 for torchvision
    itself, None without a torchvision case of that precision and for the matmul case)."""
    if what not in WHATS:
        raise ValueError(f"what must be one of {WHATS}, got {what!r}")
    seconds = {case: [] for case in cases}
    for r in range(rounds):
        for framework, model, precision in cases:
            s = measure({"framework": framework, "model": model, "precision": precision,
                         "what": what, "frames": frames, "size": size, "batch": batch,
                         "threads": threads, "iters": iters})
            seconds[(framework, model, precision)].append(s)
            if log:
                log(f"torchvision {what} round {r + 1}/{rounds}: {framework} {model} "
                    f"{precision} {s:.3f} s")
    medians = {case: statistics.median(v) for case, v in seconds.items()}
    rows = []
    for (f, m, p), sec in medians.items():
        reference = medians.get(("torchvision", "s3d", p)) if f != MATMUL_CASE[0] else None
        rows.append({"framework": f, "model": m, "precision": p, "what": what,
                     "frames": frames, "size": size, "batch": batch, "threads": threads,
                     "seconds": sec, "rounds": seconds[(f, m, p)],
                     "torchvision_over_this": reference / sec if reference else None})
    return rows


def gflop_per_call(framework: str, model: str, what: str, *, frames: int, size: int,
                   batch: int) -> float:
    """GFLOPs of one call (2 x MACs; a train step counted as 3 forward passes:
    `benchmark.model.step_gflop`); torchvision's S3D is counted on the `s3d_torchvision`
    preset, which has its architecture."""
    if framework == "machine":
        return 2 * MATMUL_N**3 / 1e9
    from d3d_tf.benchmark import model as speed

    name = "s3d_torchvision" if framework == "torchvision" else model
    return speed.step_gflop(_forward_gflop(name, frames, size), what, batch)


@functools.cache
def _forward_gflop(name: str, frames: int, size: int) -> float:
    from d3d_tf import models
    from d3d_tf.models import summary

    net = models.build_classifier(name, num_classes=400, input_shape=(frames, size, size, 3))
    return summary.total_flops(net) / 1e9


def with_gflops(rows: list[dict], flops=gflop_per_call) -> list[dict]:
    """`rows` (from `compare`) with `gflop` per call, `gflops_per_s` and `of_matmul` (that
    over the matmul row's GFLOP/s of the same `what`, when there is one) added."""
    for r in rows:
        r["gflop"] = flops(r["framework"], r["model"], r["what"], frames=r["frames"],
                           size=r["size"], batch=r["batch"])
        r["gflops_per_s"] = r["gflop"] / r["seconds"]
    peak = {r["what"]: r["gflops_per_s"] for r in rows
            if (r["framework"], r["model"]) == MATMUL_CASE[:2]}
    for r in rows:
        r["of_matmul"] = r["gflops_per_s"] / peak[r["what"]] if r["what"] in peak else None
    return rows


def target_needs(rows: list[dict]) -> list[dict]:
    """Per `what` with a float32 torchvision row and a matmul row: what S3D-G would need to be
    `TARGETS[what]` times faster than torchvision: `seconds`, `gflops_per_s`, `of_matmul`."""
    needs = []
    for what, times in TARGETS.items():
        get = {(r["framework"], r["model"]): r for r in rows
               if r["what"] == what and r["precision"] == "float32"}
        tv, ours, peak = get.get(("torchvision", "s3d")), get.get(("d3d_tf", "s3dg")), \
            get.get(MATMUL_CASE[:2])
        if tv and ours and peak:
            seconds = tv["seconds"] / times
            gflops = ours["gflop"] / seconds
            needs.append({"what": what, "times": times, "seconds": seconds,
                          "gflops_per_s": gflops, "of_matmul": gflops / peak["gflops_per_s"]})
    return needs


if __name__ == "__main__":
    print(measure_one(json.loads(sys.argv[1])))
