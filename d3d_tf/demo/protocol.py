"""The demo's claims judged by the evidence protocol (docs/protocol.md).

    dirs = {7: "protocol_out/data_7", 9: "protocol_out/data_9"}   # data seed -> demo out_dir
    result = compare_runs(dirs, train_seeds=2, a="baseline", b="d3d")
    lines = protocol_lines(dirs, train_seeds=2, num_classes=4)

A demo out_dir holds one data seed's runs: `eval<suffix>/per_video.csv` (every network's
predicted class per test video) and `probes/<run><suffix>/probe.json` (a probe's EPE per test
clip) for every training seed. The verdicts come from `d3d_tf.metrics.paired`, which implements
the protocol's rule; this module only gathers the cells and words the result. Defines no flags.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import os
import random

import numpy as np

from d3d_tf.core.config_flags import field
from d3d_tf.demo import stages
from d3d_tf.metrics import paired


@dataclasses.dataclass
class DataSeedsConfig:
    """Which draws of the data a demo runs on (a section of both demos' configs)."""
    data_seeds: tuple = field((), "Data seeds to run the whole demo on, each in "
                              "<out_dir>/data_<seed>/, judged together in "
                              "<out_dir>/protocol.md (docs/protocol.md says what a data seed "
                              "draws in each demo); empty = the flagfiles' own seeds, in "
                              "<out_dir>.")
    fresh_data_seeds: int = field(0, "Draw this many data seeds at random (never the "
                                  "development seeds), remember them in "
                                  "<out_dir>/data_seeds.json so a rerun resumes them, and run "
                                  "as with --data_seeds.", min=0)

# Settings are chosen by looking at these data seeds only (0: synthetic.flags' own, where the
# demo's settings were first chosen, and `make demo`'s); acceptance runs never use them.
DEVELOPMENT_DATA_SEEDS = (0, 101, 102)
# The regime's conditions (docs/protocol.md): baseline off chance and off its ceiling, a
# teacher that knows more, λ·L_d about the size of the cross-entropy at the start.
ABOVE_CHANCE = 0.10
CEILING = 0.90
TEACHER_LEAD = 0.10
LAMBDA_RATIO = (0.5, 2.0)


def run_suffix(seed: int) -> str:
    """Suffix of training seed `seed`'s run and evaluation folders (none for seed 0)."""
    return "" if seed == 0 else f"_seed{seed}"


def first_seeds(name: str, count: int | None, seeds: int) -> int:
    """How many training seeds (0..N-1) a part of a demo runs: `count`, or all `seeds` when
    None (ValueError naming `name` when it exceeds `seeds`)."""
    n = seeds if count is None else count
    if n > seeds:
        raise ValueError(f"{name}={n} exceeds seeds={seeds}")
    return n


def data_seeds_note(data_seeds) -> str:
    """The reports' words on `data_seeds`: whether the settings could have been chosen on
    them (a development seed among them makes the run a development run, not evidence)."""
    dev = [d for d in data_seeds if d in DEVELOPMENT_DATA_SEEDS]
    if dev:
        return (f"**includes the development seed(s) {', '.join(str(d) for d in dev)}**, on "
                "which the settings were chosen: a development run, not evidence on new data")
    return ("development seeds, never used here: "
            f"{', '.join(str(d) for d in DEVELOPMENT_DATA_SEEDS)}")


def draw_fresh_data_seeds(count: int, rng: random.Random | None = None) -> list[int]:
    """`count` distinct data seeds drawn at random in [1000, 2**31), never a development
    seed, so no setting can have been chosen on them."""
    rng = rng or random.SystemRandom()
    seeds: list[int] = []
    while len(seeds) < count:
        s = rng.randrange(1000, 2 ** 31)
        if s not in seeds and s not in DEVELOPMENT_DATA_SEEDS:
            seeds.append(s)
    return seeds


def resolve_data_seeds(out_dir: str, data_seeds, fresh: int) -> list[int]:
    """The data seeds a demo runs on, from its `--data_seeds` (`data_seeds`: ints or their
    strings) and `--fresh_data_seeds` (`fresh`) values: the given seeds; or the `fresh` seeds
    an earlier run of `out_dir` drew (`<out_dir>/data_seeds.json`, so a rerun resumes them);
    or `fresh` new ones (`draw_fresh_data_seeds`), written there; [] when neither is set (the
    demo's one built-in draw). ValueError naming the flag or file for a bad combination."""
    from d3d_tf.core import atomic

    if data_seeds and fresh:
        raise ValueError("give --data_seeds or --fresh_data_seeds, not both")
    if data_seeds:
        try:
            seeds = [int(s) for s in data_seeds]
        except ValueError:
            raise ValueError(f"--data_seeds takes integers, got {list(data_seeds)}") from None
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"--data_seeds takes distinct integers >= 0, got {seeds}")
        return seeds
    if not fresh:
        return []
    path = os.path.join(out_dir, "data_seeds.json")
    if os.path.exists(path):
        with open(path) as f:
            seeds = json.load(f)["data_seeds"]
        if len(seeds) != fresh:
            raise ValueError(f"{path} holds {len(seeds)} data seeds drawn earlier, not "
                             f"--fresh_data_seeds={fresh}: use another --out_dir")
        return seeds
    seeds = draw_fresh_data_seeds(fresh)
    os.makedirs(out_dir, exist_ok=True)
    atomic.write_json(path, {"data_seeds": seeds})
    return seeds


def _per_video(out_dir: str, seed: int) -> tuple[list[str], dict[str, np.ndarray]]:
    from d3d_tf.training import evaluation

    path = os.path.join(out_dir, "eval" + run_suffix(seed), evaluation.PER_VIDEO_CSV)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the evaluation of training seed {seed} "
                                "has not run (rerun the demo; finished stages are reused)")
    return evaluation.read_per_video_correct(path)


def accuracy_cells(dirs: dict[int, str], train_seeds: int, a: str, b: str) -> list[paired.Cell]:
    """One cell per (data seed, training seed): per-video correctness of runs `a` and `b`."""
    cells = []
    for data_seed, out_dir in dirs.items():
        for seed in range(train_seeds):
            _, correct = _per_video(out_dir, seed)
            cells.append(paired.Cell(data_seed, seed, correct[a], correct[b]))
    return cells


def clip_epe(result: dict) -> dict[str, float]:
    """video id -> EPE (px) of a probe's evaluation clips (`probe.json`, or its result at one
    endpoint)."""
    return {c["video_id"]: c["epe"] for c in result["clips"]}


def paired_cells(data_seed: int, runs) -> list[paired.Cell]:
    """One cell per (training seed, a's values, b's values) of `runs` (values: id -> number),
    on the ids every run of this data seed shares, in one order."""
    common = sorted(set.intersection(*(set(x) & set(y) for _, x, y in runs)))
    return [paired.Cell(data_seed, seed, np.array([x[v] for v in common]),
                        np.array([y[v] for v in common])) for seed, x, y in runs]


def probe_result(out_dir: str, run: str, alias: str = "3A") -> dict | None:
    """The result at `alias` of `run`'s probe in `<out_dir>/probes/<run>/` (probe.json as
    `d3d_tf.probe` writes it: one result per endpoint), or None while it has not run."""
    from d3d_tf.probes import probe_tables

    path = os.path.join(out_dir, "probes", run, probe_tables.PROBE_FILE)
    if not os.path.isfile(path):
        return None
    return probe_tables.result_at(probe_tables.load_runs([path])[0], alias)


def _probe_epe(out_dir: str, run: str) -> dict[str, float] | None:
    """Per-clip EPE (px) of `run`'s 3A probe, or None while it has not run."""
    result = probe_result(out_dir, run)
    return clip_epe(result) if result else None


def probe_cells(dirs: dict[int, str], train_seeds: int, a: str = "baseline",
                b: str = "d3d") -> list[paired.Cell]:
    """One cell per (data seed, training seed) whose two probes ran: EPE (px) per test clip
    of `a`'s and `b`'s probes, on the videos both evaluated (the same in every seed)."""
    cells = []
    for data_seed, out_dir in dirs.items():
        runs = [(seed, _probe_epe(out_dir, a + run_suffix(seed)),
                 _probe_epe(out_dir, b + run_suffix(seed))) for seed in range(train_seeds)]
        runs = [r for r in runs if r[1] and r[2]]
        if runs:
            cells += paired_cells(data_seed, runs)
    return cells


def _train_summary(out_dir: str, run: str) -> dict:
    path = os.path.join(out_dir, "runs", run, "train_summary.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def regime_checks(dirs: dict[int, str], train_seeds: int, num_classes: int) -> list[str]:
    """The protocol's conditions on the regime, one line per data seed: what holds and what
    does not (empty list when no data seed has results)."""
    chance = 1.0 / num_classes if num_classes else 0.0
    lines = []
    for data_seed, out_dir in dirs.items():
        acc = {}
        for seed in range(train_seeds):
            try:
                _, correct = _per_video(out_dir, seed)
            except FileNotFoundError:
                continue
            for name, c in correct.items():
                acc.setdefault(name, []).append(float(c.mean()))
        if "baseline" not in acc:
            continue
        base = float(np.mean(acc["baseline"]))
        teacher = float(np.mean(acc.get("teacher", [float("nan")])))
        problems = []
        if base < chance + ABOVE_CHANCE:
            problems.append(f"baseline {base:.1%} within {ABOVE_CHANCE:.0%} of chance")
        if base > CEILING:
            problems.append(f"baseline {base:.1%} above the {CEILING:.0%} ceiling")
        if not teacher >= base + TEACHER_LEAD:
            problems.append(f"teacher {teacher:.1%} less than {TEACHER_LEAD:.0%} above the "
                            "baseline")
        ratios = []
        for seed in range(train_seeds):
            s = _train_summary(out_dir, "d3d" + run_suffix(seed))
            first = s.get("first_train_logs") or {}
            weights = (s.get("config") or {}).get("distill_weights") or ()
            # `lambda` is logged when the run set it by the rule (--distill_lambda_rule).
            lam_value = first.get("lambda", weights[0] if len(weights) == 1 else None)
            if "ce" in first and "distill" in first and lam_value is not None:
                ratios.append(lam_value * first["distill"] / first["ce"])
        lam = (f"λ·L_d / CE at the start {min(ratios):.2f}–{max(ratios):.2f}" if ratios
               else "λ·L_d / CE at the start unknown")
        if ratios and not all(LAMBDA_RATIO[0] <= r <= LAMBDA_RATIO[1] for r in ratios):
            problems.append(f"{lam}, outside {LAMBDA_RATIO[0]}–{LAMBDA_RATIO[1]}")
        verdict = "all conditions hold" if not problems else "**not met**: " + "; ".join(problems)
        lines.append(f"- data seed {data_seed}: baseline {base:.1%}, teacher {teacher:.1%}, "
                     f"{lam}: {verdict}.")
    return lines


def compare_runs(dirs: dict[int, str], train_seeds: int, a: str, b: str) -> paired.Comparison:
    """Video top-1 of run `b` minus run `a`, paired, over every data and training seed."""
    return paired.compare(accuracy_cells(dirs, train_seeds, a, b))


def percent(x: float, *, signed: bool = False) -> str:
    """A fraction as percent with one decimal, halves rounded away from zero on the value as
    written (0.2775 -> "27.8"), so one mean computed two ways prints the same."""
    written = decimal.Decimal(repr(round(100 * float(x), 9)))
    exact = written.quantize(decimal.Decimal("0.1"), decimal.ROUND_HALF_UP)
    return f"{exact:+}" if signed else f"{exact}"


def _pts(x: float) -> str:
    return percent(x, signed=True)


def comparison_lines(result: paired.Comparison, *, a: str, b: str, unit: str = "points",
                     lower_is_better: bool = False) -> list[str]:
    """A table of the gap per data seed and pooled, and the verdict in words."""
    fmt = _pts if unit == "points" else (lambda x: f"{x:+.3f}")
    lines = [f"| data seed | {a} | {b} | {b} − {a} ({unit}) | 95 % interval |",
             "| ---: | ---: | ---: | ---: | --- |"]
    value = percent if unit == "points" else (lambda x: f"{x:.3f}")
    for d, g in result.per_data_seed.items():
        lines.append(f"| {d} | {value(g.mean_a)} | {value(g.mean_b)} | {fmt(g.mean)} | "
                     f"[{fmt(g.low)}, {fmt(g.high)}] |")
    p = result.pooled
    lines.append(f"| pooled | {value(p.mean_a)} | {value(p.mean_b)} | **{fmt(p.mean)}** | "
                 f"**[{fmt(p.low)}, {fmt(p.high)}]** |")
    above, below = result.signs()
    n = len(result.per_data_seed)
    verdict = result.verdict()
    better = "B < A" if lower_is_better else "B > A"
    worse = "B > A" if lower_is_better else "B < A"
    every = "its one data seed" if n == 1 else f"all {n} data seeds"
    if verdict == better:
        words = (f"**{b} is better than {a}**: the pooled interval excludes 0 and the sign "
                 f"holds in {every}.")
    elif verdict == worse:
        words = (f"**{b} is worse than {a}**: the pooled interval excludes 0 and the sign "
                 f"holds in {every}.")
    else:
        words = (f"**No claim** for {b} against {a}: the pooled interval "
                 f"[{fmt(p.low)}, {fmt(p.high)}] "
                 + ("includes 0" if p.low <= 0 <= p.high else "excludes 0")
                 + f", and {b}'s value is higher in {above} and lower in {below} of {n} "
                 + ("data seed." if n == 1 else "data seeds."))
    cells = sum(1 for _ in result.cells)
    return lines + ["", (f"- {words} ({cells} cells; test videos per data seed: "
                        f"{', '.join(str(v) for v in result.videos.values())}.)")]


def cost_lines(dirs: dict[int, str], *, speed_run: str, speed_label: str,
               train_seeds: int) -> list[str]:
    """The "Cost on this machine" section: the wall time of every draw's stages, and the
    median seconds per step of `speed_run`'s trainings (`<dir>/runs/<speed_run><suffix>`),
    the figure that tells a fast machine's run from a slow one's."""
    per_draw = {d: stages.stage_times(folder) for d, folder in dirs.items()}
    total = sum(s for rows in per_draw.values() for _, s in rows)
    if not total:
        return []
    longest = max((s, name, d) for d, rows in per_draw.items() for name, s in rows)
    lines = ["## Cost on this machine", "",
             (f"- Stages: {total:.0f} s ({total / 3600:.2f} h) of wall time in all; "
              + ", ".join(f"data seed {d} {sum(s for _, s in rows):.0f} s"
                          for d, rows in per_draw.items())
              + f"; the longest stage {longest[1]} of data seed {longest[2]} ({longest[0]:.0f} "
              "s). A stage reused on a rerun counts the run that did it; setting up the "
              "environment is not included.")]
    steps = [t["seconds_per_step"] for folder in dirs.values() for s in range(train_seeds)
             if (t := _train_summary(folder, speed_run + run_suffix(s))).get("seconds_per_step")]
    if steps:
        lines.append(f"- This machine's speed: {speed_label} trained at a median "
                     f"{float(np.median(steps)):.3f} s/step over {len(steps)} runs; compare "
                     "it to tell how much of a cost difference is the machine's.")
    return lines + [""]
