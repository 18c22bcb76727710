"""Looking at a learned video representation (DistInit Figs. 3-5).

* `filter_grid`: the first-layer filters over time as one picture (a row per filter, a column
  per time step); `filters_png`: the labelled picture of several models' filters (a row per
  model, each filter a strip of its time steps); `temporal_variation`, one number for how
  much they change over time (0 for inflated filters, which repeat the 2D filter).
* `pca_2d` and `tsne_2d`: 2D embeddings of pooled features `[N,C]` for a scatter plot coloured
  by class. scikit-learn is not a dependency: `tsne_2d` is a small exact t-SNE in numpy
  (O(N^2) memory and time, meant for a few hundred videos), and `pca_2d` the linear fallback.
"""
from __future__ import annotations

import numpy as np

from d3d_tf.core import atomic


def filter_grid(kernel: np.ndarray, *, max_filters: int = 64, pad: int = 1) -> np.ndarray:
    """uint8 RGB picture of a first-layer kernel `[t,h,w,3,C]` (Keras layout).

    Row c shows filter c at time steps 0..t-1, each tile scaled to [0,255] by the filter's own
    min and max over all its time steps (so a filter constant over time shows equal tiles).
    With fewer than 3 input channels (flow) each channel is shown as its own grey tile.
    """
    tiles = _filter_tiles(kernel, max_filters)
    t, h, w, _, n = tiles.shape
    grid = np.ones((n * (h + pad) + pad, t * (w + pad) + pad, 3), np.float32)
    for c in range(n):
        for i in range(t):
            y, x = pad + c * (h + pad), pad + i * (w + pad)
            grid[y:y + h, x:x + w] = tiles[i, :, :, :, c]
    return np.round(grid * 255).astype(np.uint8)


def _filter_tiles(kernel: np.ndarray, max_filters: int) -> np.ndarray:
    """The first `max_filters` filters of a kernel `[t,h,w,Cin,C]` as RGB tiles
    `[t',h,w,3,n]` in [0,1], each filter scaled by its own min and max over all its time steps
    (t' = t, or t*Cin grey tiles per filter when Cin != 3)."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 5:
        raise ValueError(f"expected a conv kernel [t,h,w,Cin,Cout], got shape {kernel.shape}")
    t, h, w, cin, cout = kernel.shape
    n = min(cout, max_filters)
    if cin == 3:
        tiles = kernel[..., :n]                                   # [t,h,w,3,n]
    else:
        tiles = np.repeat(kernel[..., None, :n], 3, axis=-2)      # [t,h,w,cin,3,n] grey
        tiles = tiles.transpose(0, 3, 1, 2, 4, 5).reshape(t * cin, h, w, 3, n)
    lo = tiles.min(axis=(0, 1, 2, 3), keepdims=True)
    hi = tiles.max(axis=(0, 1, 2, 3), keepdims=True)
    return (tiles - lo) / np.maximum(hi - lo, 1e-12)


def filter_mosaic(kernel: np.ndarray, *, max_filters: int = 64, columns: int = 8,
                  pad: int = 1, gap: int = 4) -> np.ndarray:
    """float RGB picture `[H,W,3]` in [0,1] of a first-layer kernel `[t,h,w,Cin,C]`: each
    filter a strip of its time steps left to right (`pad` px apart), the filters in rows of
    `columns` (`gap` px apart, white), filter 0 top left. Scaling as in `filter_grid`."""
    tiles = _filter_tiles(kernel, max_filters)
    t, h, w, _, n = tiles.shape
    cell_w = t * (w + pad) - pad
    rows = -(-n // columns)
    out = np.ones((rows * (h + gap) + gap, min(n, columns) * (cell_w + gap) + gap, 3),
                  np.float32)
    for c in range(n):
        y = gap + (c // columns) * (h + gap)
        x0 = gap + (c % columns) * (cell_w + gap)
        for i in range(t):
            x = x0 + i * (w + pad)
            out[y:y + h, x:x + w] = tiles[i, :, :, :, c]
    return out


def filters_png(models, path: str, *, max_filters: int = 64, columns: int | None = None) -> None:
    """Writes one picture of the first-layer filters of several models to `path`: a row per
    model, titled with its name, kernel shape and `temporal_variation`; inside a row each
    filter is a strip of its time steps (left to right; one grey tile per input channel when
    there are not 3), `columns` filters per line (default: about 24 tiles per line).

    `models`: [(name, kernel [t,h,w,Cin,C])].
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(models)
    if not models:
        raise ValueError("no models to draw the filters of")
    pictures = []
    for _, kernel in models:
        t, _, _, cin, _ = np.shape(kernel)
        tiles = t * (1 if cin == 3 else cin)
        pictures.append(filter_mosaic(kernel, max_filters=max_filters,
                                      columns=columns or max(2, round(24 / tiles))))
    width = 10.0
    heights = [width * p.shape[0] / p.shape[1] + 0.6 for p in pictures]
    fig, axes = plt.subplots(len(models), 1, figsize=(width, sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, kernel), picture in zip(axes[:, 0], models, pictures):
        shape = "x".join(str(d) for d in np.shape(kernel))
        ax.imshow(picture, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        cin = np.shape(kernel)[3]
        grey = "" if cin == 3 else f", {cin} grey tiles (channels) per time step"
        ax.set_title(f"{name}: conv1 {shape} (first {min(np.shape(kernel)[-1], max_filters)} "
                     f"filters), temporal variation {temporal_variation(kernel):.3f}{grey}",
                     fontsize=11)
        ax.set_ylabel(name, fontsize=11, fontweight="bold")
    fig.suptitle("First-layer filters: each strip is one filter over time (left to right); "
                 "identical tiles = no change over time", fontsize=11)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)


def temporal_variation(kernel: np.ndarray) -> float:
    """Mean over filters of ||k_t - mean_t k|| / ||k|| for a kernel `[t,h,w,Cin,Cout]`: 0 when
    every filter is the same at every time step (inflation), larger when it varies in time."""
    kernel = np.asarray(kernel, np.float64)
    flat = kernel.reshape(kernel.shape[0], -1, kernel.shape[-1])   # [t,hwc,C]
    dev = np.linalg.norm(flat - flat.mean(axis=0, keepdims=True), axis=(0, 1))
    norm = np.maximum(np.linalg.norm(flat, axis=(0, 1)), 1e-12)
    return float(np.mean(dev / norm))


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components of `features` `[N,C]`: `[N,2]`."""
    x = np.asarray(features, np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def _conditional_p(d2: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities whose entropy matches log(perplexity) (binary search)."""
    n = d2.shape[0]
    target = np.log(perplexity)
    p = np.zeros_like(d2)
    for i in range(n):
        lo, hi, beta = 0.0, np.inf, 1.0
        di = np.delete(d2[i], i)
        for _ in range(50):
            e = np.exp(-(di - di.min()) * beta)
            s = e.sum()
            h = np.log(s) + beta * np.sum((di - di.min()) * e) / s
            if abs(h - target) < 1e-5:
                break
            if h > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = e / s
    return p


def tsne_2d(features: np.ndarray, *, perplexity: float = 20.0, iterations: int = 500,
            seed: int = 0) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton 2008) of `features` `[N,C]` to `[N,2]`.

    PCA to at most 50 dimensions first, early exaggeration 12 for the first 100 iterations,
    gradient descent with momentum 0.5 then 0.8 and learning rate max(N/12, 50).
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    x = x - x.mean(axis=0)
    if x.shape[1] > 50:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:50].T
    d2 = np.square(x[:, None] - x[None]).sum(-1)
    p = _conditional_p(d2, perplexity)
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    y = np.random.default_rng(seed).normal(0, 1e-4, (n, 2))
    velocity = np.zeros_like(y)
    lr = max(n / 12.0, 50.0)
    for it in range(iterations):
        exaggeration = 12.0 if it < 100 else 1.0
        num = 1.0 / (1.0 + np.square(y[:, None] - y[None]).sum(-1))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4.0 * (pq.sum(1)[:, None] * y - pq @ y)
        velocity = (0.5 if it < 250 else 0.8) * velocity - lr * grad
        y = y + velocity
        y = y - y.mean(axis=0)
    return y


def scatter_png(points: np.ndarray, labels, path: str, *, title: str, names=None) -> None:
    """Writes a scatter plot of `points` `[N,2]` coloured by integer `labels` to `path`."""
    scatter_panels_png([(title, points, labels)], path, names=names)


def scatter_panels_png(panels, path: str, *, names=None) -> None:
    """Writes one scatter plot per panel side by side (several models' embeddings of the same
    videos, DistInit's Fig. 5), coloured by class, with one legend.

    `panels`: [(title, points [N,2], integer labels [N])]; `names`: class names by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = np.unique(np.concatenate([np.asarray(lab) for _, _, lab in panels]))
    columns = 1 + len(classes) // 25
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2.2 * columns, 6),
                             squeeze=False)
    colors = {k: plt.cm.tab20(i % 20) for i, k in enumerate(classes)}
    for ax, (title, points, labels) in zip(axes[0], panels):
        labels = np.asarray(labels)
        for k in classes:
            m = labels == k
            ax.scatter(points[m, 0], points[m, 1], s=16, color=colors[k],
                       label=names[k] if names is not None and 0 <= k < len(names) else str(k))
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("embedding dimension 1", fontsize=10)
        ax.set_ylabel("embedding dimension 2", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
                       ncol=columns, title="class", title_fontsize=9)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
