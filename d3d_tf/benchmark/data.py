"""Input-pipeline throughput measurement (the library behind `benchmark --mode=data`).

`run_data_benchmark` writes small synthetic TFRecord sets (numpy frames, JPEG / PNG encoded
exactly as `prepare` stores them) into a folder and times `pipeline.make_dataset` in training
mode (random window, crop, flip), reporting clips per second after a warm-up: with all of
tf.data's threads (this machine's cores) and with one thread (tf.data's private thread pool of
1 thread and intra-op parallelism 1), the clips/s one CPU core delivers.

`cores_needed` turns the one-thread rate into the cores one accelerator needs: an accelerator
that trains `accelerator_batch` clips every `accelerator_step_s` seconds consumes
`accelerator_batch / accelerator_step_s` clips/s. The default step time is an ESTIMATE for an
H100 (not a measurement; docs/gpu.md derives it): replace it by a measured one
(`python -m d3d_tf.benchmark.gpu` prints the step time of S3D-G at 64x224^2).
"""
from __future__ import annotations

import dataclasses
import os
import time

import cv2
import numpy as np

from d3d_tf.data import pipeline, records

# The H100 estimate of `cores_needed` (docs/gpu.md "How many CPU cores per GPU"): S3D-G at
# 64x224^2 in mixed float16, batch 8 per GPU, ~100 clips/s. An estimate, not a measurement.
H100_ESTIMATE_STEP_S = 0.08
H100_ESTIMATE_BATCH = 8


@dataclasses.dataclass
class DataBenchCase:
    """One row of the data benchmark. Sizes in frames / pixels."""
    name: str
    stored_frames: int        # N frames per stored video
    stored_height: int        # stored frame size (short side = height)
    stored_width: int
    num_frames: int           # T of the clip
    crop_size: int
    batch_size: int
    modalities: tuple[str, ...] = ("rgb",)
    resize_short_side: int | None = None


def default_cases(smoke: bool = False) -> list[DataBenchCase]:
    """Demo size (16 frames, 64 crop from 80 px) and paper size (64x224^2 from 256 px)."""
    if smoke:
        sizes = [("tiny", 8, 40, 53, 4, 32, 2)]
    else:
        sizes = [("demo 16x64^2 (80 px stored)", 64, 80, 106, 16, 64, 8),
                 ("paper 64x224^2 (256 px stored)", 64, 256, 341, 64, 224, 2)]
    cases = []
    for name, n, h, w, t, c, b in sizes:
        for mods in (("rgb",), ("rgb", "flow")):
            cases.append(DataBenchCase(f"{name} {'+'.join(mods)}", n, h, w, t, c, b, mods))
    return cases


def synthetic_video(num_frames: int, height: int, width: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A textured image translating over time: uint8 frames [N,H,W,3] and quantized flow
    uint8 [N-1,H,W,2]. Smooth texture plus mild noise, so JPEG sizes resemble real video."""
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    big = cv2.resize(base, (width + num_frames * 2, height), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([big[:, 2 * t:2 * t + width] for t in range(num_frames)])
    noise = rng.integers(-6, 7, frames.shape, dtype=np.int16)
    frames = np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    flow_q = np.full((num_frames - 1, height, width, 2), 128, np.uint8)
    flow_q[..., 0] = 115  # -2 px in x
    flow_q[..., 1] += rng.integers(0, 3, flow_q.shape[:-1], dtype=np.uint8)
    return frames, flow_q


def write_synthetic_shards(out_dir: str, case: DataBenchCase, num_videos: int,
                           num_shards: int = 2, seed: int = 0) -> str:
    """Writes `num_videos` synthetic videos (with flow) for `case`; returns the glob."""
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    writers = [records.ShardWriter(os.path.join(out_dir, f"bench-{k:05d}-of-{num_shards:05d}"
                                                          f".tfrecord"))
               for k in range(num_shards)]
    for i in range(num_videos):
        frames, flow_q = synthetic_video(case.stored_frames, case.stored_height,
                                         case.stored_width, rng)
        writers[i % num_shards].write(records.make_sequence_example(
            frames, video_id=f"v{i:04d}", label=i % 4, label_name=f"c{i % 4}", flow_q=flow_q))
    for w in writers:
        w.close()
    return os.path.join(out_dir, "bench-*.tfrecord")


def one_thread(dataset):
    """`dataset` run by one CPU thread: tf.data's private thread pool of 1 thread, intra-op
    parallelism 1 (its parallel maps and interleaves then share that thread)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def measure_clips_per_second(config: pipeline.PipelineConfig, num_batches: int,
                             warmup_batches: int = 2, single_thread: bool = False) -> dict:
    """Iterates the pipeline; returns clips/s over `num_batches` after `warmup_batches`
    (`single_thread`: on one CPU thread, `one_thread`)."""
    dataset = pipeline.make_dataset(config)
    it = iter(one_thread(dataset) if single_thread else dataset)
    for _ in range(warmup_batches):
        next(it)
    clips = 0
    start = time.perf_counter()
    for _ in range(num_batches):
        batch = next(it)
        clips += int(batch["label"].shape[0])
    seconds = time.perf_counter() - start
    return {"clips": clips, "seconds": seconds, "clips_per_s": clips / seconds}


def cores_needed(clips_per_s_per_core: float, accelerator_step_s: float = H100_ESTIMATE_STEP_S,
                 accelerator_batch: int = H100_ESTIMATE_BATCH) -> float:
    """CPU cores whose pipelines feed one accelerator training `accelerator_batch` clips every
    `accelerator_step_s` seconds, each core delivering `clips_per_s_per_core` (assumes the
    pipeline scales linearly over cores: a lower bound)."""
    return accelerator_batch / accelerator_step_s / clips_per_s_per_core


def run_data_benchmark(work_dir: str, cases: list[DataBenchCase] | None = None,
                       num_videos: int = 8, num_batches: int = 10, warmup_batches: int = 2,
                       log=print, per_core: bool = True) -> list[dict]:
    """Writes synthetic shards for each stored size and measures every case.

    Returns one dict per case: the case's fields plus clips, seconds, clips_per_s (all
    threads), record_bytes (mean bytes per stored video), cpu_count and, with `per_core`,
    clips_per_s_per_core (the same pipeline on one thread).
    """
    cases = cases if cases is not None else default_cases()
    results, patterns = [], {}
    for case in cases:
        key = (case.stored_frames, case.stored_height, case.stored_width)
        if key not in patterns:
            folder = os.path.join(work_dir, "x".join(map(str, key)))
            t0 = time.perf_counter()
            patterns[key] = write_synthetic_shards(folder, case, num_videos)
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
            log(f"wrote {num_videos} synthetic videos {key[0]}x{key[1]}x{key[2]} "
                f"({size / num_videos / 1e6:.2f} MB each) in {time.perf_counter() - t0:.1f} s")
            patterns[key] = (patterns[key], size / num_videos)
        pattern, video_bytes = patterns[key]
        config = pipeline.PipelineConfig(
            file_pattern=pattern, num_frames=case.num_frames, crop_size=case.crop_size,
            training=True, modalities=case.modalities, batch_size=case.batch_size,
            resize_short_side=case.resize_short_side, shuffle_buffer=num_videos, seed=0)
        result = measure_clips_per_second(config, num_batches, warmup_batches)
        result.update(dataclasses.asdict(case), record_bytes=video_bytes,
                      cpu_count=os.cpu_count())
        if per_core:
            one = measure_clips_per_second(config, num_batches, warmup_batches,
                                           single_thread=True)
            result["clips_per_s_per_core"] = one["clips_per_s"]
        log(f"{case.name}: {result['clips_per_s']:.1f} clips/s"
            + (f", {result['clips_per_s_per_core']:.2f} clips/s on one core" if per_core else ""))
        results.append(result)
    return results


def format_table(results: list[dict], accelerator_step_s: float = H100_ESTIMATE_STEP_S,
                 accelerator_batch: int = H100_ESTIMATE_BATCH) -> str:
    """The data table; with per-core rates also the cores one accelerator needs at
    `accelerator_step_s` seconds per step of `accelerator_batch` clips."""
    per_core = all("clips_per_s_per_core" in r for r in results) and results
    rows = [("case", "clip", "batch", "clips/s", "ms/clip")
            + (("clips/s/core", "cores/accelerator") if per_core else ())]
    for r in results:
        extra = ()
        if per_core:
            cores = cores_needed(r["clips_per_s_per_core"], accelerator_step_s,
                                 accelerator_batch)
            extra = (f"{r['clips_per_s_per_core']:.2f}", f"{cores:.1f}")
        rows.append((r["name"], f"{r['num_frames']}x{r['crop_size']}^2", str(r["batch_size"]),
                     f"{r['clips_per_s']:.1f}", f"{1000 / r['clips_per_s']:.1f}") + extra)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if per_core:
        estimate = (" (the H100 ESTIMATE, not a measurement: docs/gpu.md)"
                    if (accelerator_step_s, accelerator_batch)
                    == (H100_ESTIMATE_STEP_S, H100_ESTIMATE_BATCH) else "")
        lines.append(f"clips/s: all {results[0]['cpu_count']} cores' threads; clips/s/core: one "
                     f"thread; cores/accelerator: cores of one thread each that feed an "
                     f"accelerator training {accelerator_batch} clips every "
                     f"{accelerator_step_s:g} s{estimate}")
    return "\n".join(lines)


def _tvl1_job(args) -> int:
    size, pairs, seed = args
    from d3d_tf.data import flow

    frames, _ = synthetic_video(pairs + 1, size, size, np.random.default_rng(seed))
    flow.compute_flow(frames, method="tvl1")
    return pairs


def tvl1_pairs_per_second(size: int, workers: int, pairs_per_worker: int = 8) -> dict:
    """TV-L1 frame pairs per second at `size`x`size` px with `workers` processes, the way
    `prepare` spreads videos over processes (each process computes whole videos)."""
    import multiprocessing

    jobs = [(size, pairs_per_worker, i) for i in range(workers)]
    warmup = [(size, 1, i) for i in range(workers)]
    if workers == 1:
        _tvl1_job(warmup[0])
        start = time.perf_counter()
        done = sum(_tvl1_job(j) for j in jobs)
        seconds = time.perf_counter() - start
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_tvl1_job, warmup, chunksize=1)  # process start-up and imports, untimed
            start = time.perf_counter()
            done = sum(pool.map(_tvl1_job, jobs, chunksize=1))
            seconds = time.perf_counter() - start
    return {"size": size, "workers": workers, "pairs": done, "seconds": seconds,
            "pairs_per_s": done / seconds}
