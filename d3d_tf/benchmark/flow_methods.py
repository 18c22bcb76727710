"""Fast flow methods against TV-L1 (the papers' flow): endpoint error and pairs/s.

    python -m d3d_tf.benchmark.flow_methods [--sizes=80,224] [--videos=4] [--num_frames=9]

Renders videos of the built-in synthetic dataset (`d3d_tf.data.synthetic`, one per class in
turn), computes every method's flow between consecutive frames in this process, and reports
each method's pairs/s and its EPE against TV-L1 after the storage quantization `prepare`
applies (±20 px, uint8), i.e. on the flow the networks would see. Results in docs/data_scale.md.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from absl import app

from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field
from d3d_tf.data import flow, synthetic


@dataclasses.dataclass
class FlowMethodsConfig:
    sizes: tuple = field((80, 224), "Frame sizes (height = width, pixels) to measure.")
    videos: int = field(4, "Synthetic videos per size (classes in turn).", min=1)
    num_frames: int = field(9, "Frames per video (num_frames - 1 pairs).", min=2)
    methods: tuple = field(("tvl1", "dis", "farneback"), "Flow methods; tvl1 is the reference "
                           "and is always measured.")
    seed: int = field(0, "Seed of the synthetic videos.")


def compare(config: FlowMethodsConfig) -> list[dict]:
    """One row per (size, method): pairs, seconds, pairs/s, EPE (px) against TV-L1."""
    methods = ["tvl1", *[m for m in config.methods if m != "tvl1"]]
    for m in methods:
        if m not in flow.FLOW_METHODS:
            raise ValueError(f"--methods: unknown flow method {m!r}; choose from "
                             f"{', '.join(flow.FLOW_METHODS)}")
    rows = []
    for size in config.sizes:
        syn = synthetic.SyntheticConfig(size=size, num_frames=config.num_frames,
                                        seed=config.seed)
        videos = [synthetic.render_video(syn, i % syn.num_classes, i)
                  for i in range(config.videos)]
        flow.compute_flow(videos[0][:2], "tvl1")  # first-call set-up, untimed
        flows, seconds = {}, {}
        for m in methods:
            start = time.perf_counter()
            flows[m] = [flow.compute_flow(v, m) for v in videos]
            seconds[m] = time.perf_counter() - start
        ref = np.concatenate([flow.dequantize_flow(flow.quantize_flow(f))
                              for f in flows["tvl1"]])
        pairs = len(ref)
        for m in methods:
            got = np.concatenate([flow.dequantize_flow(flow.quantize_flow(f)) for f in flows[m]])
            rows.append({"size": size, "method": m, "pairs": pairs, "seconds": seconds[m],
                         "pairs_per_s": pairs / seconds[m],
                         "epe_vs_tvl1": flow.endpoint_error(got, ref),
                         "tvl1_mean_magnitude": float(np.linalg.norm(ref, axis=-1).mean())})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| frame | method | pairs | pairs/s | x TV-L1 speed | EPE vs TV-L1 (px) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next(b for b in rows if b["size"] == r["size"] and b["method"] == "tvl1")
        lines.append(f"| {r['size']}x{r['size']} | {r['method']} | {r['pairs']} | "
                     f"{r['pairs_per_s']:.2f} | {r['pairs_per_s'] / base['pairs_per_s']:.1f} | "
                     f"{r['epe_vs_tvl1']:.3f} |")
    magnitudes = sorted({(r["size"], r["tvl1_mean_magnitude"]) for r in rows})
    lines.append("mean TV-L1 magnitude (px): " + ", ".join(
        f"{s}x{s}: {m:.3f}" for s, m in magnitudes))
    return "\n".join(lines)


config_flags.define_flags(FlowMethodsConfig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    print(format_table(compare(config_flags.from_flags(FlowMethodsConfig))))


if __name__ == "__main__":
    cli.run(main)
