"""DistInit Fig. 6: fine-tuned accuracy against the teacher-entropy threshold of DistInit
pre-training, over the density of the teacher's softmax entropy per frame.

    fig = figure(results, entropies=h, teacher="kinetics400 (first of 2 teachers)")

`results`: `{name: metrics}` as `python -m d3d_tf.evaluate` writes (results.json), a row per
threshold named by the threshold in nats ("1.5", "2.7"), plus rows with other names ("none":
no threshold) drawn as horizontal reference lines; accuracy = `metrics["video"]["top1"]` in %.
"""
from __future__ import annotations

import numpy as np

from d3d_tf.core import atomic


def points(results: dict) -> tuple[list[tuple[float, float]], list[tuple[str, float]]]:
    """(threshold nats, top-1 %) sorted by threshold, and (name, top-1 %) of the rows whose
    name is not a number (the references); rows without a video top-1 are left out."""
    line, refs = [], []
    for name, metrics in results.items():
        top1 = ((metrics or {}).get("video") or {}).get("top1")
        if top1 is None:
            continue
        try:
            line.append((float(name), 100 * top1))
        except ValueError:
            refs.append((name, 100 * top1))
    return sorted(line), refs


def figure(results: dict, *, entropies=None, teacher: str = "", bins: int = 40):
    """The matplotlib figure: accuracy (%) against the threshold (nats, a line with markers),
    a dashed horizontal line per reference row, and, when `entropies` (float `[F]`, nats per
    frame) are given, their density (a histogram of total area 1) on a second y-axis.

    Raises ValueError when no row is named by a threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line, refs = points(results)
    if not line:
        raise ValueError("--table=distinit_fig6: no result is named by an entropy threshold "
                         "(--name=1.5 ...); the plot needs at least one")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if entropies is not None and len(entropies):
        density = ax.twinx()
        density.hist(np.asarray(entropies, np.float64), bins=bins, density=True,
                     color="tab:grey", alpha=0.35,
                     label=f"entropy density{f' ({teacher})' if teacher else ''}")
        density.set_ylabel("density of the teacher's entropy per frame")
        ax.set_zorder(density.get_zorder() + 1)
        ax.patch.set_visible(False)
    x, y = zip(*line)
    ax.plot(x, y, marker="o", color="tab:blue", label="accuracy")
    for i, (name, acc) in enumerate(refs):
        ax.axhline(acc, linestyle="--", color=f"C{i + 1}", label=f"{name} (no threshold)")
    ax.set_xlabel("teacher-entropy threshold (nats)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy variation with entropy (DistInit Fig. 6)")
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, fontsize=9, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_png(results: dict, path: str, **kwargs) -> str:
    """`figure(results, **kwargs)` saved to `path` (PNG, atomically); returns `path`."""
    import matplotlib.pyplot as plt

    fig = figure(results, **kwargs)
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
