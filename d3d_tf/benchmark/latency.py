"""Latency of exported models: per-call wall time of a SavedModel signature or a TFLite
interpreter on uint8 clips, after warm-up.

    stats = saved_model_latency("exports/s3dg/1", batch=1, runs=20)
    stats = tflite_latency("exports/s3dg_float32.tflite", num_threads=2)
    print(stats.mean_ms, stats.p90_ms)
    both = tflite_alternating(["m_float32.tflite", "m_int8.tflite"], num_threads=1, runs=300)
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass
class LatencyStats:
    """Milliseconds per call (one call = `batch` clips)."""

    runs: int
    batch: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    min_ms: float

    @property
    def per_clip_ms(self) -> float:
        return self.median_ms / self.batch


def measure(fn: Callable[[], object], *, warmup: int = 2, runs: int = 10,
            batch: int = 1) -> LatencyStats:
    """Calls `fn()` `warmup` times untimed (graph tracing, allocation, delegate setup), then
    `runs` times timed."""
    return measure_alternating([fn], warmup=warmup, runs=runs, batch=batch)[0]


def measure_alternating(fns: list[Callable[[], object]], *, warmup: int = 2, runs: int = 10,
                        batch: int = 1) -> list[LatencyStats]:
    """Like `measure` for several functions, called in turn within each run, so that a change
    of machine load during the measurement falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ms in zip(fns, times):
            start = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - start) * 1e3)
    return [_stats(np.asarray(t), batch) for t in times]


def _stats(t: np.ndarray, batch: int) -> LatencyStats:
    return LatencyStats(runs=len(t), batch=batch, mean_ms=float(t.mean()),
                        median_ms=float(np.median(t)), p90_ms=float(np.percentile(t, 90)),
                        min_ms=float(t.min()))


def _random_clip(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def saved_model_latency(path: str, *, batch: int = 1, warmup: int = 2,
                        runs: int = 10) -> LatencyStats:
    """Latency of the `serving_default` signature of a SavedModel (version dir or model base)."""
    import tensorflow as tf

    from d3d_tf.deploy import saved_model

    fn = tf.saved_model.load(saved_model.find_saved_model(path)).signatures[
        saved_model.SIGNATURE_KEY]
    spec = fn.structured_input_signature[1][saved_model.INPUT_NAME]
    clip = tf.constant(_random_clip((batch, *spec.shape[1:])))
    return measure(lambda: fn(frames=clip)["probabilities"].numpy(), warmup=warmup, runs=runs,
                   batch=batch)


def tflite_latency(path: str, *, num_threads: int | None = None, warmup: int = 2,
                   runs: int = 10) -> LatencyStats:
    """Latency of one clip through a .tflite model with the LiteRT interpreter (default
    XNNPACK CPU delegate; `num_threads` None = all cores)."""
    return tflite_alternating([path], num_threads=num_threads, warmup=warmup, runs=runs)[0]


def tflite_alternating(paths: list[str], *, num_threads: int | None = None, warmup: int = 2,
                       runs: int = 10) -> list[LatencyStats]:
    """`tflite_latency` of several .tflite models (e.g. float32 and int8), called in turn
    (`measure_alternating`), each on a random uint8 clip of its input shape."""
    from ai_edge_litert.interpreter import Interpreter

    calls = []
    for path in paths:
        runner = Interpreter(model_path=os.fspath(path),
                             num_threads=num_threads or os.cpu_count()).get_signature_runner()
        detail = runner.get_input_details()["frames"]
        clip = _random_clip(tuple(detail["shape"])).astype(detail["dtype"])
        calls.append(lambda runner=runner, clip=clip: runner(frames=clip))
    return measure_alternating(calls, warmup=warmup, runs=runs, batch=1)
