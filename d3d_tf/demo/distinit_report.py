"""`demo_out/distinit/report.md`: the DistInit demo's results laid out like the paper's Table 1.

Reads what `d3d_tf.demo.distinit`'s stages wrote (the evaluation's results.json and
per_video.csv per seed, train_summary.json of the teacher and the DistInit runs,
representation.json and its pictures, the stage markers' times). `write_report(out_dir,
seeds=N)` can be rerun on its own; `write_protocol_report(out_dir, dirs, seeds=N)` writes
`<out_dir>/protocol.md`, Table 1's order judged over data seeds by the evidence protocol
(docs/protocol.md, `d3d_tf.metrics.paired`).
"""
from __future__ import annotations

import json
import os
import statistics

from d3d_tf.core import atomic
from d3d_tf.data import preprocessing
from d3d_tf.demo import protocol, stages
from d3d_tf.demo.protocol import run_suffix
from d3d_tf.metrics import paper_tables

__all__ = ["generator_seeds", "interpretation", "paired_comparisons", "run_suffix",
           "write_protocol_report", "write_report"]

SHAPES_DIR = "pool_shapes"  # records of the pool labelled by shape (d3d_tf.demo.distinit)


def generator_seeds(data_seed: int) -> dict[str, int]:
    """The synthetic generator's `--seed` of each of the demo's sets for data seed `data_seed`
    (d): pool 10·d, labeled set 10·d+1, image set 10·d+2, so the three sets of one data seed
    differ and no two data seeds share a set."""
    return {"pool": 10 * data_seed, "labeled": 10 * data_seed + 1, "images": 10 * data_seed + 2}

NETWORK_NAMES = {"r3d_18": "Res3D-18", "r2plus1d_18": "R(2+1)D-18"}
ROWS = (  # method, network, Table 1's row, what the initialization learned from
    ("scratch", "r3d_18", "Scratch", "nothing (random init)"),
    ("inflated", "r3d_18", "Inflated", "the image teacher's 2D weights, repeated over time"),
    ("distinit", "r3d_18", "DistInit", "the unlabeled pool, the image teacher's soft labels"),
    ("scratch", "r2plus1d_18", "Scratch", "nothing (random init)"),
    ("inflated", "r2plus1d_18", "Inflated", None),  # no 2D counterpart, as in the paper
    ("distinit", "r2plus1d_18", "DistInit", "the unlabeled pool, the image teacher's soft labels"),
)
COMPARISONS = (  # (method a, method b, network): does a beat b?
    ("distinit", "scratch", "r3d_18"),
    ("distinit", "scratch", "r2plus1d_18"),
    ("distinit", "inflated", "r3d_18"),
    ("inflated", "scratch", "r3d_18"),
)
# The protocol's claims (docs/protocol.md), in the order Table 1's "DistInit > inflation >
# scratch" is read: the same (a, b, network) triples as COMPARISONS.
PROTOCOL_ORDER = (("distinit", "inflated", "r3d_18"), ("inflated", "scratch", "r3d_18"),
                  ("distinit", "scratch", "r3d_18"), ("distinit", "scratch", "r2plus1d_18"))
REPRESENTATIONS = (  # folder under representation/, caption
    ("inflated_r3d_18", "Res3D-18 inflated from the image teacher (before fine-tuning)"),
    ("distinit_r3d_18", "Res3D-18 after DistInit (before fine-tuning)"),
    ("distinit_r2plus1d_18", "R(2+1)D-18 after DistInit (before fine-tuning)"),
    ("scratch_r3d_18", "Res3D-18 trained from scratch on the labels (seed 0)"),
)


def _load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _top1(evals, name, level="video"):
    """Per-seed top-1 of run `name` (None where a seed has no result)."""
    return [e[name][level]["top1"] if e and name in e else None for e in evals]


METHOD_NAMES = {"scratch": "Scratch", "inflated": "Inflated", "distinit": "DistInit"}


def _label(method: str, network: str) -> str:
    return f"{METHOD_NAMES[method]} {NETWORK_NAMES[network]}"


def per_network(seeds) -> dict[str, int]:
    """`seeds` (training seeds of every network, or network -> its own count, as
    `d3d_tf.demo.distinit.network_seeds` gives) as network -> count."""
    return dict(seeds) if isinstance(seeds, dict) else {n: seeds for n in NETWORK_NAMES}


def seeds_text(seeds) -> str:
    """'5', or '5 (R(2+1)D-18: 2)' where a network runs fewer training seeds."""
    counts = per_network(seeds)
    most = max(counts.values())
    fewer = [f"{NETWORK_NAMES[n]}: {k}" for n, k in counts.items() if k != most]
    return f"{most}" + (f" ({', '.join(fewer)})" if fewer else "")


def paired_comparisons(dirs: dict, seeds) -> dict:
    """(a, b, network) of COMPARISONS -> video top-1 of a's fine-tuning minus b's, paired
    video by video over `dirs` (data seed -> demo out_dir) and the network's training seeds
    0..N-1 (`seeds`: N, or network -> N) (`d3d_tf.metrics.paired.Comparison`, its A = b, its
    B = a), or None while an `eval*/per_video.csv` or a run in it is missing."""
    out, counts = {}, per_network(seeds)
    for a, b, network in COMPARISONS:
        try:
            out[(a, b, network)] = protocol.compare_runs(dirs, counts[network],
                                                         f"{b}_{network}", f"{a}_{network}")
        except (FileNotFoundError, KeyError):
            out[(a, b, network)] = None
    return out


def _interval(result) -> str:
    p = result.pooled
    return f"paired 95 % interval of the gap [{100 * p.low:+.1f}, {100 * p.high:+.1f}] points"


def interpretation(evals: list, seeds, *, num_classes: int | None = None,
                   teacher_top1: float | None = None, teacher_classes: int = 4,
                   comparisons: dict | None = None) -> list[str]:
    """What the numbers say (video top-1), written from the numbers rather than assumed.

    `evals`: one evaluation results.json (a dict run name -> metrics) per seed; `seeds`: their
    number, or network -> its number (`per_network`).
    `comparisons`: `paired_comparisons` of this out_dir; where one is given, a difference is
    claimed by the protocol's rule (docs/protocol.md: paired 95 % interval off 0, the same
    sign in every data seed). Where it is missing (evaluations from before per_video.csv), a
    difference is claimed only when the mean gap is more than two test videos and it has the
    same sign in every seed, and a line says so; anything else is "no reliable difference".
    `num_classes`: of the labeled
    set, to say when every run ended within two test videos of chance; `teacher_top1`: the
    image teacher's per-video top-1 on held-out pool videos over its `teacher_classes` shapes,
    to say when it is too close to chance (below 1.5x chance) for its targets to carry shape
    information.
    """
    count = next((e[n]["video"].get("count") for e in evals if e for n in e
                  if e[n].get("video", {}).get("count")), None)
    margin = 2.0 / count if count else 0.05
    lines, verdicts = [], {}
    for a, b, network in COMPARISONS:
        pairs = [(x, y) for x, y in zip(_top1(evals, f"{a}_{network}"),
                                        _top1(evals, f"{b}_{network}"))
                 if x is not None and y is not None]
        if not pairs:
            continue
        mean_a = statistics.mean(x for x, _ in pairs)
        mean_b = statistics.mean(y for _, y in pairs)
        wins = sum(x > y for x, y in pairs)
        losses = sum(x < y for x, y in pairs)
        la, lb = _label(a, network), _label(b, network)
        seeds_note = f" ({wins} of {len(pairs)} seeds)" if len(pairs) > 1 else ""
        result = (comparisons or {}).get((a, b, network))
        if result is not None:
            verdict = {"B > A": "better", "B < A": "worse"}.get(result.verdict(), "none")
            verdicts[(a, b, network)] = verdict
            if verdict == "better":
                lines.append(f"- {la} ({mean_a:.1%}) **beats** {lb} ({mean_b:.1%}){seeds_note} "
                             f"by the protocol's rule: {_interval(result)}.")
            elif verdict == "worse":
                lines.append(f"- {la} ({mean_a:.1%}) is **worse** than {lb} ({mean_b:.1%})"
                             f"{seeds_note} by the protocol's rule: {_interval(result)}.")
            else:
                lines.append(f"- {la} ({mean_a:.1%}) and {lb} ({mean_b:.1%}) show **no reliable "
                             f"difference**{seeds_note} by the protocol's rule: "
                             f"{_interval(result)}.")
        elif mean_a - mean_b > margin and wins == len(pairs):
            verdicts[(a, b, network)] = "better"
            lines.append(f"- {la} ({mean_a:.1%}) **beats** {lb} ({mean_b:.1%}){seeds_note}: "
                         "by more than two test videos, in every seed.")
        elif mean_b - mean_a > margin and losses == len(pairs):
            verdicts[(a, b, network)] = "worse"
            lines.append(f"- {la} ({mean_a:.1%}) is **worse** than {lb} ({mean_b:.1%})"
                         f"{seeds_note}: by more than two test videos, in every seed.")
        else:
            verdicts[(a, b, network)] = "none"
            lines.append(f"- {la} ({mean_a:.1%}) and {lb} ({mean_b:.1%}) show **no reliable "
                         f"difference**{seeds_note}: the gap is within two test videos or "
                         "changes sign between seeds.")
    if not lines:
        return ["- No fine-tuning run has evaluation results; see the stages above."]
    if any((comparisons or {}).get(k) is None for k in verdicts):
        lines.append("- Some evaluations have no per-video predictions (eval*/per_video.csv, "
                     "written since the evidence protocol): their verdicts use the older rule "
                     "(more than two test videos, the same sign in every seed). Delete "
                     "`stages/evaluate*.done` and rerun the demo for the paired verdicts of "
                     "docs/protocol.md.")
    per_row = [[v for v in _top1(evals, f"{m}_{n}") if v is not None]
               for m, n, _, source in ROWS if source]
    means = [statistics.mean(values) for values in per_row if values]
    if num_classes and means and max(means) <= 1 / num_classes + margin:
        lines.append(f"- **Every run ended near chance** (at most {max(means):.1%}, chance "
                     f"{1 / num_classes:.1%}; within two test videos): fine-tuning learned "
                     "nothing from the labeled videos, so this table compares no "
                     "initializations. The verdicts above say only that.")
    if teacher_top1 is not None and teacher_top1 < 1.5 / teacher_classes:
        lines.append(f"- **The image teacher is near chance** on held-out pool videos "
                     f"({teacher_top1:.1%} per video, chance {1 / teacher_classes:.1%}): its soft "
                     "labels carry little shape information and its inflated weights know "
                     "little, so neither DistInit nor inflation has anything to pass on.")
    over_scratch = [verdicts.get(("distinit", "scratch", n)) for n in NETWORK_NAMES]
    over_inflated = verdicts.get(("distinit", "inflated", "r3d_18"))
    if all(v == "better" for v in over_scratch) and over_inflated == "better":
        lines.append("- This run agrees with the paper's Table 1 (DistInit above scratch for "
                     "both networks and above inflation): pre-training on unlabeled videos "
                     "with an image teacher's soft labels gave a better start than random "
                     "weights and than the teacher's own weights inflated.")
    elif "better" in over_scratch or over_inflated == "better":
        lines.append("- This run supports the paper's Table 1 only in part: DistInit helped "
                     "where marked **beats** above and not elsewhere.")
    else:
        lines.append("- This run does **not** show DistInit's gain of the paper's Table 1 "
                     "(about 16 points over scratch and 4 over inflation on HMDB-51).")
    if count:
        counted = "One seed" if seeds == 1 else f"{seeds_text(seeds)} seeds"
        lines.append(f"- {counted} on {count} test videos: one video is "
                     f"{100 / count:.1f} points. A training seed runs its own DistInit "
                     "pre-training and fine-tunings; the image teacher and the "
                     "inflation made from it ran once (the fixed image model both start from), "
                     "so the ± does not include their variation: a new draw of the data "
                     "(`--data_seeds`) does.")
    lines.append("- They do not reproduce the paper's numbers: the data is synthetic "
                 "(4 shapes x motions on a plain background), the image teacher is a "
                 "shrunk 2D ResNet-18 trained here on frames of its own image set, not ImageNet's "
                 "ResNet-50, and every network is shrunk (width 0.25, 32 px crops) and trained "
                 "for minutes on a CPU.")
    lines.append("- The teacher knows only the shape, which one frame shows; the motion half "
                 "of each label must still be learned from the few labeled videos, whatever "
                 "the initialization.")
    return lines


def _comparison_sections(comparisons: dict, level: str = "##") -> list[str]:
    """A table and verdict per protocol claim (`paired_comparisons`), in PROTOCOL_ORDER."""
    lines = []
    for a, b, network in PROTOCOL_ORDER:
        result = comparisons.get((a, b, network))
        lines += [(f"{level} {METHOD_NAMES[a]} against {METHOD_NAMES[b].lower()} "
                   f"({NETWORK_NAMES[network]})"), ""]
        lines += (protocol.comparison_lines(result, a=_label(b, network),
                                                 b=_label(a, network)) if result
                  else ["- missing per-video predictions: rerun the demo."])
        lines.append("")
    return lines


def _table1_order(comparisons: dict) -> list[str]:
    """Whether Table 1's order holds by the protocol's rule, one line per network."""
    def holds(*keys):
        return all(comparisons.get(k) is not None and comparisons[k].verdict() == "B > A"
                   for k in keys)

    def word(ok):
        return "**holds**" if ok else "**not shown**"

    r3d = holds(("distinit", "inflated", "r3d_18"), ("inflated", "scratch", "r3d_18"),
                ("distinit", "scratch", "r3d_18"))
    r2p1 = holds(("distinit", "scratch", "r2plus1d_18"))
    return [(f"- Res3D-18, DistInit > inflation > scratch: {word(r3d)} (it needs each of "
             "the three Res3D-18 comparisons above to be a claim by the rule)."),
            f"- R(2+1)D-18, DistInit > scratch: {word(r2p1)}."]


def write_protocol_report(out_dir: str, dirs: dict[int, str], *, seeds) -> str:
    """`<out_dir>/protocol.md`: Table 1's order (docs/protocol.md's DistInit claims) judged
    over the data seeds of `dirs` (data seed -> that seed's demo out_dir) and `seeds`
    training seeds each (or network -> its number); returns its path."""
    rows = [(m, n) for m, n, _, source in ROWS if source]
    lines = ["# The DistInit demo judged by the evidence protocol", "",
             (f"Data seeds: {', '.join(str(d) for d in dirs)} "
              f"({protocol.data_seeds_note(dirs)}); "
              f"training seeds per data seed: {seeds_text(seeds)}. "
              "Data seed d draws the unlabeled pool, the labeled set and the image set with the "
              "generator's seeds 10·d, 10·d+1 and 10·d+2. Training seed s pre-trains the DistInit "
              "students and fine-tunes every start with seed s; the image teacher and the "
              "inflation made from it run once per data seed (the fixed image model, ImageNet's "
              "role, that DistInit and inflation both start from). Every gap is paired: the same "
              "test videos, the same training seed; intervals are the hierarchical bootstrap of "
              "docs/protocol.md, and a claim needs the pooled interval off 0 and the same sign in "
              "every data seed."),
             "", "## Per data seed (video top-1 %, mean over training seeds)", "",
             ("| data seed | image teacher (held-out pool) | "
              + " | ".join(_label(m, n) for m, n in rows) + " |"),
             "| ---: | ---: |" + " ---: |" * len(rows)]
    chance = None
    for d, folder in dirs.items():
        evals = [_load(os.path.join(folder, "eval" + run_suffix(s), "results.json"))
                 for s in range(max(per_network(seeds).values()))]
        teacher = (_load(os.path.join(folder, "runs", "image_teacher", "train_summary.json"))
                   or {}).get("video_top1")
        cells = []
        for m, n in rows:
            values = [v for v in _top1(evals, f"{m}_{n}") if v is not None]
            cells.append(protocol.percent(statistics.mean(values)) if values else "–")
        lines.append(f"| {d} | {'–' if teacher is None else f'{100 * teacher:.1f}'} | "
                     + " | ".join(cells) + " |")
        labels_path = os.path.join(folder, "records", "labeled", "labels.txt")
        if chance is None and os.path.exists(labels_path):
            chance = 1 / len(preprocessing.read_labels(labels_path))
    lines.append("")
    comparisons = paired_comparisons(dirs, seeds)
    counts = sorted({v for c in comparisons.values() if c for v in c.videos.values()})
    notes = ([f"- Chance on the labeled set: {100 * chance:.1f} %."] if chance else [])
    if counts and counts[0] < 400:
        notes.append(f"- Test videos per data seed: {', '.join(map(str, counts))}, fewer than "
                     "the protocol's 400: one video is "
                     f"{100 / counts[0]:.1f} points, so only large gaps can be claimed.")
    lines += notes + ([""] if notes else [])
    lines += _comparison_sections(comparisons)
    lines += ["## Table 1's order", ""] + _table1_order(comparisons)
    lines += [""] + protocol.cost_lines(dirs, speed_run="distinit_r3d_18",
                                        speed_label="the DistInit Res3D-18 pre-training",
                                        train_seeds=per_network(seeds)["r3d_18"])
    path = os.path.join(out_dir, "protocol.md")
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def _teacher_lines(out_dir: str, teacher: dict, shapes: int) -> list[str]:
    """`teacher`: the image teacher's train_summary.json ({} when missing)."""
    lines = []
    if teacher.get("clip_top1") is not None:
        lines.append(f"- Image teacher (2D ResNet-18 on single frames, {shapes} shapes, chance "
                     f"{1 / shapes:.1%}): "
                     f"shape top-1 {teacher['clip_top1']:.1%} per frame and "
                     f"{teacher['video_top1']:.1%} per video on the pool's held-out videos.")
    for network, pretty in NETWORK_NAMES.items():
        s = _load(os.path.join(out_dir, "runs", f"distinit_{network}", "train_summary.json"))
        # The mean over the last log window; runs from before it was recorded: the last batch.
        logs = (s or {}).get("mean_train_logs") or {}
        where = f"the last {s.get('mean_train_logs_steps')} steps" if logs else "the last batch"
        logs = logs or (s or {}).get("final_train_logs") or {}
        if "distinit" in logs:
            agree = (f"; the student's top class equals the teacher's on "
                     f"{logs['teacher_top1']:.0%} of the clips" if "teacher_top1" in logs
                     else "")
            lines.append(f"- DistInit {pretty} (training seed 0): {s['step']} steps; over "
                         f"{where}: soft cross-entropy {logs['distinit']:.3f} (teacher entropy "
                         f"{logs.get('teacher_entropy', float('nan')):.3f} nats){agree}.")
    return lines


def write_report(out_dir: str, *, seeds=1, data_seed: int | None = None) -> str:
    """Writes `<out_dir>/report.md` and returns its path (`seeds`: training seeds, or network
    -> its number; `data_seed`: the data seed of this out_dir's videos, as the paired tables
    name it; None: the flagfiles' own seeds)."""
    suffixes = [run_suffix(s) for s in range(max(per_network(seeds).values()))]
    evals = [_load(os.path.join(out_dir, "eval" + s, "results.json")) for s in suffixes]
    labels_path = os.path.join(out_dir, "records", "labeled", "labels.txt")
    labels = preprocessing.read_labels(labels_path) if os.path.exists(labels_path) else []
    shapes_path = os.path.join(out_dir, "records", SHAPES_DIR, "labels.txt")
    shapes = len(preprocessing.read_labels(shapes_path)) if os.path.exists(shapes_path) else 4
    spec = _load(os.path.join(out_dir, "runs", "finetune", "scratch_r3d_18", "model",
                              "model.json")) or {}
    teacher = _load(os.path.join(out_dir, "runs", "image_teacher", "train_summary.json")) or {}

    lines = ["# d3d_tf DistInit demo report", "",
             ("DistInit on the built-in synthetic data, on this machine's CPU. An image "
              "teacher (a 2D ResNet-18) learns the object's shape from single frames of a "
              "separate image set (ImageNet's role); DistInit trains Res3D-18 and "
              "R(2+1)D-18 on an unlabeled video pool to predict the teacher's soft labels of "
              "random frames; each network is then "
              "fine-tuned on a small labeled action set from scratch, from the inflated "
              "teacher (Res3D-18 only) or from DistInit, and evaluated on its held-out videos. "
              "A labeled class is a shape doing a motion"
              + (f" ({len(labels)} classes: {', '.join(labels)})" if labels else "")
              + ": one frame shows the shape, only the motion tells left from right."), ""]
    if spec:
        t, h, w, _ = spec["input_shape"]
        lines += [(f"Clips: {t} frames of {h}x{w} px; width multiplier "
                   f"{spec['config'].get('depth_multiplier')}; seeds: {seeds_text(seeds)}."),
                  ""]
    lines += ["## Teacher and pre-training", ""] + (_teacher_lines(out_dir, teacher, shapes) or
                                                     ["- n/a"]) + [""]

    rows = []
    for method, network, row, source in ROWS:
        name = f"{method}_{network}"
        if source is None:
            rows.append((NETWORK_NAMES[network], row, [], [], [],
                         "no 2D counterpart (as in the paper)"))
            continue
        top5 = [e[name]["video"]["top5"] if e and name in e else None for e in evals]
        rows.append((NETWORK_NAMES[network], row, _top1(evals, name, "clip"),
                     _top1(evals, name), top5, source))
    columns, cells = paper_tables.distinit_rows(rows, extra="Learned before fine-tuning from")
    lines += ["## Results (cf. DistInit's Table 1)", ""]
    lines += paper_tables.markdown(columns, cells, (
        "Distillation vs Inflation, the layout of DistInit's Table 1 (python -m d3d_tf.evaluate "
        "--table=distinit_table1) on the demo's labeled synthetic set: accuracy (%) per clip "
        "and per video (top 1, top 5)."))
    chance = f" Chance is {100 / len(labels):.1f}%." if labels else ""
    lines += ["", ("Mean ± sample std over the fine-tuning seeds. Clip: the centre crop of one "
              "clip; video: the mean softmax of 2 clips." + chance), ""]

    label = "built-in" if data_seed is None else data_seed
    comparisons = paired_comparisons({label: out_dir}, seeds)
    lines += ["## What these numbers show, and what they do not", ""]
    lines += interpretation(evals, seeds, num_classes=len(labels) or None,
                            teacher_top1=teacher.get("video_top1"),
                            teacher_classes=shapes, comparisons=comparisons) + [""]
    if any(comparisons.values()):
        lines += ["## Paired comparisons (docs/protocol.md)", "",
                  ("Video top-1, paired video by video and training seed by training seed; "
                   f"data seed {label}" + (" (the flagfiles' generator seeds)"
                                           if data_seed is None else "") + "."), ""]
        lines += _comparison_sections(comparisons, level="###")

    lines += ["## First-layer filters and pooled features (cf. Figs. 3-5)", "",
              ("Filters: each strip is one `conv1` filter over time, left to right (R(2+1)D: its "
               "[1,7,7] spatial filters). Embedding: t-SNE of the pooled features of every "
               "labeled video, coloured by class. Temporal variation: mean of "
               "‖k_t − mean_t k‖ / ‖k‖ over filters, 0 when a filter repeats over time."), ""]
    for folder, caption in REPRESENTATIONS:
        rep_dir = os.path.join(out_dir, "representation", folder)
        rep = _load(os.path.join(rep_dir, "representation.json"))
        if not rep:
            continue
        variation = ", ".join(f"{m['temporal_variation']:.3f}" for m in rep.get("models", [rep]))
        lines += [f"### {caption}", "", f"Temporal variation of conv1: {variation}.", ""]
        for png in ("filters.png", "embedding.png"):
            if os.path.exists(os.path.join(rep_dir, png)):
                lines.append(f"![{folder} {png[:-4]}]({os.path.relpath(rep_dir, out_dir)}/{png})")
        lines.append("")

    eval_dir = os.path.join(out_dir, "eval" + suffixes[0])
    if os.path.exists(os.path.join(eval_dir, "per_class_difference.png")):
        lines += [("![per-class accuracy, DistInit minus inflated Res3D-18 (cf. Fig. 7)]"
                   f"({os.path.relpath(eval_dir, out_dir)}/per_class_difference.png)"),
                  "*per-class accuracy, DistInit minus inflated Res3D-18 (cf. Fig. 7)*", ""]

    times = stages.stage_times(out_dir)
    if times:
        lines += ["## Stage times", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {name} | {seconds:.0f} |" for name, seconds in times]
        lines += [f"| total | {sum(s for _, s in times):.0f} |", "",
                  "Wall time of each stage when it ran (a reused stage keeps its first time).",
                  ""]

    lines += ["## Artifacts", ""]
    for label, folder in (("videos and manifests", "videos"), ("TFRecords", "records"),
                          ("training runs", "runs"), ("evaluation", "eval" + suffixes[0]),
                          ("filters and embeddings", "representation")):
        if os.path.exists(os.path.join(out_dir, folder)):
            lines.append(f"- {label}: `{os.path.join(out_dir, folder)}`")
    lines.append("")
    report = os.path.join(out_dir, "report.md")
    atomic.write_text(report, "\n".join(lines))
    return report
