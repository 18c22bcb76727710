"""Paired comparisons of two methods over data seeds, training seeds and test videos.

The demos' evidence protocol (docs/protocol.md) is implemented here and nowhere else:

    cells = [Cell(data_seed=1, train_seed=0, a=correct_baseline, b=correct_d3d), ...]
    result = compare(cells)          # B minus A, pooled and per data seed, 95 % intervals
    result.verdict()                 # "B > A", "B < A" or "no claim", by the protocol's rule

A cell is one (data seed, training seed) pair: both methods trained with that training seed on
that data seed's training videos and scored on the same test videos, one value per video
(1/0 for a correct/wrong video-level prediction, or a continuous score such as a probe's EPE
in pixels). Every gap is paired: B's value minus A's on the same video of the same cell.

The interval is a hierarchical (three-stage) percentile bootstrap: each draw resamples the data
seeds, then within each drawn data seed its training seeds and its test videos (one video
resample shared by the data seed's training seeds, since they are scored on the same videos).
It covers the three sources of variation a fresh draw of the experiment would change — which
data, which training run, which test videos — without assuming a distribution for 0/1 gaps;
a paired t-test over cells would ignore that cells of one data seed share their test videos.
With few data seeds the interval is wide: that is the price of judging a claim on new data.

A value that is not a mean over test videos (AVA's frame-mAP) is compared the same way with
`compare_statistic`: a `StatisticCell` carries, per method, a function of the video weights
(how many times each test video is in a resample) that recomputes the statistic, and every
bootstrap draw recomputes both methods' statistic on the same resample.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

DRAWS = 10000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (data seed, training seed) pair: `a`, `b` float [V], one value per test video, in
    the same video order for both (and for every training seed of the data seed)."""
    data_seed: int
    train_seed: int
    a: np.ndarray
    b: np.ndarray


@dataclasses.dataclass(frozen=True)
class StatisticCell:
    """One (data seed, training seed) pair whose value is a statistic of its test videos that
    is not a mean over them (frame-mAP). `a`, `b`: video weights float [n, V] (row i: how many
    times each of the V test videos is in resample i; a row of ones is the test set itself)
    -> the statistic of each resample, float [n]. The V videos are in the same order for both
    methods and for every training seed of the data seed."""
    data_seed: int
    train_seed: int
    videos: int
    a: Callable[[np.ndarray], np.ndarray]
    b: Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Gap:
    """Mean of B minus A and its bootstrap interval (`low`, `high`), in the values' units."""
    mean: float
    low: float
    high: float
    mean_a: float
    mean_b: float


@dataclasses.dataclass(frozen=True)
class Comparison:
    """`pooled`: the mean over data seeds (each weighted equally) of the mean over their
    training seeds; `per_data_seed`: the same within each data seed; `cells`: the gap of
    every cell, `(data seed, training seed) -> B minus A`."""
    pooled: Gap
    per_data_seed: dict[int, Gap]
    cells: dict[tuple[int, int], float]
    videos: dict[int, int]

    def signs(self) -> tuple[int, int]:
        """(data seeds whose mean gap is > 0, data seeds whose mean gap is < 0)."""
        gaps = [g.mean for g in self.per_data_seed.values()]
        return sum(g > 0 for g in gaps), sum(g < 0 for g in gaps)

    def verdict(self) -> str:
        """The protocol's rule: "B > A" when the pooled interval lies above 0 and the gap is
        positive in every data seed; "B < A" the mirror image; otherwise "no claim"."""
        above, below = self.signs()
        n = len(self.per_data_seed)
        if self.pooled.low > 0 and above == n:
            return "B > A"
        if self.pooled.high < 0 and below == n:
            return "B < A"
        return "no claim"


def _by_data_seed(cells) -> dict[int, tuple[np.ndarray, np.ndarray, list[int]]]:
    """data seed -> (A values [S,V], B values [S,V], training seeds), checking the shapes."""
    groups: dict[int, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.data_seed, []).append(c)
    out = {}
    for d, group in sorted(groups.items()):
        seeds = [c.train_seed for c in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"data seed {d}: training seed listed twice in {seeds}")
        sizes = {np.shape(c.a) for c in group} | {np.shape(c.b) for c in group}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1 or next(iter(sizes))[0] == 0:
            raise ValueError(f"data seed {d}: every cell needs the same non-empty number of "
                             f"test videos for A and B, got shapes {sorted(sizes)}")
        a = np.stack([np.asarray(c.a, np.float64) for c in group])
        b = np.stack([np.asarray(c.b, np.float64) for c in group])
        out[d] = (a, b, seeds)
    return out


def _inner_draws(diff: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """float [draws]: mean gap of `diff` [S,V] with its training seeds and videos resampled
    (one video resample per draw, shared by the training seeds)."""
    s, v = diff.shape
    out = np.empty(draws)
    for lo in range(0, draws, 1000):  # bounded memory: [S, 1000, V] at a time
        n = min(1000, draws - lo)
        videos = rng.integers(0, v, size=(n, v))
        per_seed = diff[:, videos].mean(axis=2)  # [S, n]
        seeds = rng.integers(0, s, size=(n, s))
        out[lo:lo + n] = np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1)
    return out


def _outer_draws(data_seeds: list, inner, draws: int, rng: np.random.Generator) -> np.ndarray:
    """float [draws]: the pooled gap with the data seeds resampled. Draw i fills k slots with
    data seeds drawn with replacement; every slot gets an inner resample of its own
    (`inner(data seed)` -> float [draws]), so a data seed drawn twice is not counted twice
    alike."""
    k = len(data_seeds)
    slots = rng.integers(0, k, size=(draws, k))
    rows = np.arange(draws)
    slot_means = []
    for j in range(k):
        values = np.stack([inner(d) for d in data_seeds])  # [k, draws]
        slot_means.append(values[slots[:, j], rows])
    return np.mean(slot_means, axis=0)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - LEVEL), 100 - 50 * (1 - LEVEL)])
    return float(lo), float(hi)


def compare(cells, *, draws: int = DRAWS, seed: int = 0) -> Comparison:
    """B minus A over `cells` (an iterable of Cell), pooled and per data seed, with the
    hierarchical bootstrap intervals (module docstring). Deterministic for a given `seed`."""
    groups = _by_data_seed(list(cells))
    if not groups:
        raise ValueError("no cells to compare")
    rng = np.random.default_rng(seed)
    diffs = {d: b - a for d, (a, b, _) in groups.items()}
    per, cell_gaps = {}, {}
    for d, (a, b, train_seeds) in groups.items():
        for s, row in zip(train_seeds, diffs[d]):
            cell_gaps[(d, s)] = float(row.mean())
        per[d] = Gap(float(diffs[d].mean()), *_percentiles(_inner_draws(diffs[d], draws, rng)),
                     float(a.mean()), float(b.mean()))
    pooled = Gap(float(np.mean([g.mean for g in per.values()])),
                 *_percentiles(_outer_draws(
                     list(groups), lambda d: _inner_draws(diffs[d], draws, rng), draws, rng)),
                 float(np.mean([g.mean_a for g in per.values()])),
                 float(np.mean([g.mean_b for g in per.values()])))
    return Comparison(pooled, per, cell_gaps, {d: a.shape[1] for d, (a, _, _) in groups.items()})


def _statistic_draws(cells: list[StatisticCell], draws: int,
                     rng: np.random.Generator) -> np.ndarray:
    """float [draws]: `_inner_draws` for statistic cells (one data seed's): the same draws of
    videos and training seeds, each method's statistic recomputed on every video resample."""
    s, v = len(cells), cells[0].videos
    out = np.empty(draws)
    for lo in range(0, draws, 1000):
        n = min(1000, draws - lo)
        videos = rng.integers(0, v, size=(n, v))
        weights = np.bincount((videos + v * np.arange(n)[:, None]).ravel(),
                              minlength=n * v).reshape(n, v).astype(np.float64)
        per_seed = np.stack([np.asarray(c.b(weights), np.float64)
                             - np.asarray(c.a(weights), np.float64) for c in cells])  # [S, n]
        seeds = rng.integers(0, s, size=(n, s))
        out[lo:lo + n] = np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1)
    return out


def compare_statistic(cells, *, draws: int = DRAWS, seed: int = 0) -> Comparison:
    """`compare` for `StatisticCell`s: B's statistic minus A's, pooled and per data seed, with
    the same hierarchical bootstrap, every draw recomputing both statistics on one shared
    resample of the data seed's test videos. A cell's gap and the means are the statistics of
    the test set itself (weights all one). Deterministic for a given `seed`."""
    groups: dict[int, list[StatisticCell]] = {}
    for c in cells:
        groups.setdefault(c.data_seed, []).append(c)
    if not groups:
        raise ValueError("no cells to compare")
    groups = dict(sorted(groups.items()))
    for d, group in groups.items():
        seeds = [c.train_seed for c in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"data seed {d}: training seed listed twice in {seeds}")
        sizes = sorted({c.videos for c in group})
        if len(sizes) != 1 or sizes[0] < 1:
            raise ValueError(f"data seed {d}: every cell needs the same non-empty number of "
                             f"test videos, got {sizes}")
    rng = np.random.default_rng(seed)
    per, cell_gaps = {}, {}
    for d, group in groups.items():
        ones = np.ones((1, group[0].videos))
        a = np.array([float(np.asarray(c.a(ones))[0]) for c in group])
        b = np.array([float(np.asarray(c.b(ones))[0]) for c in group])
        for c, x, y in zip(group, a, b):
            cell_gaps[(d, c.train_seed)] = float(y - x)
        per[d] = Gap(float(np.mean(b - a)), *_percentiles(_statistic_draws(group, draws, rng)),
                     float(a.mean()), float(b.mean()))
    pooled = Gap(float(np.mean([g.mean for g in per.values()])),
                 *_percentiles(_outer_draws(
                     list(groups), lambda d: _statistic_draws(groups[d], draws, rng), draws,
                     rng)),
                 float(np.mean([g.mean_a for g in per.values()])),
                 float(np.mean([g.mean_b for g in per.values()])))
    return Comparison(pooled, per, cell_gaps, {d: g[0].videos for d, g in groups.items()})


def power(gap: float, spread: float, *, data_seeds: int = 3, train_seeds: int = 3,
          videos: int = 400, base: float = 0.8, rounds: int = 300, draws: int = 2000,
          seed: int = 0) -> float:
    """The fraction of `rounds` simulated rounds in which the rule claims B > A when every
    cell's gap (accuracy, a fraction) is drawn from normal(`gap`, `spread`): `data_seeds` x
    `train_seeds` cells, `videos` test videos each, A right on a fraction `base` of them and B
    on `base + gap` (the videos A gets right nested in B's). How often a round of that size
    can show a gain of that size; docs/protocol.md uses it for the D3D claim."""
    rng = np.random.default_rng(seed)
    order = np.arange(videos)
    claims = 0
    for r in range(rounds):
        cells = []
        for d in range(data_seeds):
            for s in range(train_seeds):
                b = np.clip(base + rng.normal(gap, spread), 0.0, 1.0)
                cells.append(Cell(d, s, (order < round(base * videos)).astype(float),
                                  (order < round(b * videos)).astype(float)))
        claims += compare(cells, draws=draws, seed=r).verdict() == "B > A"
    return claims / rounds
