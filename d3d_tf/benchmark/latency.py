"""Latency of exported models: per-call wall time of a SavedModel signature or a TFLite
interpreter on uint8 clips, after warm-up.

    stats = saved_model_latency("exports/s3dg/1", batch=1, runs=20)
    stats = tflite_latency("exports/s3dg_float32.tflite", num_threads=2)
    print(stats.mean_ms, stats.p90_ms)
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
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    t = np.asarray(times)
    return LatencyStats(runs=runs, batch=batch, mean_ms=float(t.mean()),
                        median_ms=float(np.median(t)), p90_ms=float(np.percentile(t, 90)),
                        min_ms=float(t.min()))


def _random_clip(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def saved_model_latency(path: str, *, batch: int = 1, warmup: int = 2,
                        runs: int = 10) -> LatencyStats:
    """Latency of the `serving_default` signature of a SavedModel (version dir or model base)."""
    import tensorflow as tf

    from d3d_tf.export import saved_model

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
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path),
                              num_threads=num_threads or os.cpu_count())
    runner = interpreter.get_signature_runner()
    detail = runner.get_input_details()["frames"]
    clip = _random_clip(tuple(detail["shape"])).astype(detail["dtype"])
    return measure(lambda: runner(frames=clip), warmup=warmup, runs=runs, batch=1)
