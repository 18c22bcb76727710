"""The demo's motion probes (D3D Table 1 at 3A): stage commands and the report section.

A PWC decoder is trained on the frozen 3A features of every seed's RGB baseline and D3D and
of seed 0's flow teacher (`configs/demo/probe.flags`), and `demo_out/report.md` gets a small
Table 1 of seed 0 (with the all-zeros row), Fig. 5's pictures, the 3A EPE of every seed and
what the numbers say. Used by `d3d_tf.demo.run` and `d3d_tf.demo.report`; this module defines
no flags.
"""
from __future__ import annotations

import os

from d3d_tf.demo import protocol

# run name, label in the tables, modality of the network's input
PROBED = (
    ("teacher", "flow teacher", "flow"),
    ("baseline", "S3D-G", "rgb"),
    ("d3d", "D3D", "rgb"),
)


def probe_dir(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, "probes", name)


def seed_name(name: str, seed: int) -> str:
    """Run (and probe folder) name of `name` for seed `seed`: `baseline`, `baseline_seed1`..."""
    return name + protocol.run_suffix(seed)


def stage_args(out_dir: str, configs: str, records: str, seeds: int = 1, *,
               teacher: bool = True) -> list[tuple[str, list[str]]]:
    """(stage name, `python -m d3d_tf.probe` arguments): seed 0's teacher (unless `teacher`
    is false), and the baseline and D3D of every seed (the probe's verdict, like the
    classification's, needs them all)."""
    stages = []
    for seed in range(seeds):
        for name, label, modality in PROBED:
            if name == "teacher" and (seed or not teacher):
                continue
            run = seed_name(name, seed)
            stages.append((f"probe_{run}", [
                f"--flagfile={os.path.join(configs, 'probe.flags')}",
                f"--model_dir={os.path.join(out_dir, 'runs', run, 'model')}",
                f"--modality={modality}", f"--label={label}",
                f"--train_data={os.path.join(records, 'train-*.tfrecord')}",
                f"--eval_data={os.path.join(records, 'test-*.tfrecord')}",
                f"--out_dir={probe_dir(out_dir, run)}"]))
    return stages


def _paired(base: dict, d3d: dict) -> tuple[int, int] | None:
    """(clips where D3D's EPE is lower, clips compared) on the clips both runs evaluated."""
    a, b = protocol.clip_epe(base), protocol.clip_epe(d3d)
    common = sorted(set(a) & set(b))
    return (sum(b[v] < a[v] for v in common), len(common)) if common else None


def interpretation(runs: dict) -> list[str]:
    """What the 3A numbers say, written from them (runs: name -> probe.json content)."""
    from d3d_tf.probes import probe_tables

    res = {n: probe_tables.result_at(r, "3A") for n, r in runs.items()}
    if not all(res.get(n) for n in ("baseline", "d3d")):
        return ["- The baseline or D3D probe is missing; see the stages above."]
    base, d3d = res["baseline"]["epe"], res["d3d"]["epe"]
    lines = []
    for name, label in (("baseline", "S3D-G"), ("d3d", "D3D"), ("teacher", "flow teacher")):
        r = res.get(name)
        if r:
            verdict = "below" if r["epe"] < r["zeros_epe"] else "**not below**"
            lines.append(f"- {label}: EPE {r['epe']:.3f} px, {verdict} all zeros "
                         f"({r['zeros_epe']:.3f} px).")
    wins = _paired(res["baseline"], res["d3d"])
    if wins:
        won, n = wins
        verdict = _comparison([(0, res["baseline"], res["d3d"])]).verdict()
        if verdict == "B < A":
            lines.append(f"- D3D's 3A decodes flow better than S3D-G's ({d3d:.3f} vs {base:.3f}"
                         f" px, lower on {won} of {n} clips; paired 95 % interval below 0), the "
                         "direction of the paper's Fig. 4.")
        elif verdict == "B > A":
            lines.append(f"- D3D's 3A decodes flow **worse** than S3D-G's ({d3d:.3f} vs "
                         f"{base:.3f} px, lower on only {won} of {n} clips; paired 95 % interval "
                         "above 0): the paper's Fig. 4 is not reproduced here.")
        else:
            lines.append(f"- No reliable difference between D3D and S3D-G at 3A ({d3d:.3f} vs "
                         f"{base:.3f} px, D3D lower on {won} of {n} clips; the paired 95 % "
                         "interval includes 0).")
    steps = runs["baseline"].get("train_steps")
    lines.append(f"- Seed 0's networks, a decoder trained for {steps or 'a few hundred'} steps "
                 "on a small synthetic set: these EPEs say what these features hold, not the "
                 "paper's numbers.")
    return lines


def _seed_results(out_dir: str) -> list[tuple[int, dict, dict]]:
    """(seed, baseline 3A result, D3D 3A result) of seeds 0, 1, ... while both probes ran."""
    found, seed = [], 0
    while True:
        base, d3d = (protocol.probe_result(out_dir, seed_name(n, seed))
                     for n in ("baseline", "d3d"))
        if not (base and d3d):
            break
        found.append((seed, base, d3d))
        seed += 1
    return found


def _comparison(found):
    """D3D minus S3D-G EPE over `found` ((seed, baseline result, D3D result), one data seed),
    paired clip by clip on the clips every seed's probes share (`d3d_tf.metrics.paired`)."""
    from d3d_tf.metrics import paired

    return paired.compare(protocol.paired_cells(
        0, [(seed, protocol.clip_epe(b), protocol.clip_epe(d)) for seed, b, d in found]))


def seed_lines(out_dir: str) -> list[str]:
    """The 3A EPE of the baseline and D3D of every seed, and what they say together (written
    only when two or more seeds were probed)."""
    found = _seed_results(out_dir)
    if len(found) < 2:
        return []
    lines = ["### 3A over seeds", "",
             "| Seed | S3D-G EPE (px) | D3D EPE (px) | S3D-G − D3D (px) | D3D lower on |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    gaps = []
    for seed, base, d3d in found:
        gaps.append(base["epe"] - d3d["epe"])
        wins = _paired(base, d3d)
        lines.append(f"| {seed} | {base['epe']:.3f} | {d3d['epe']:.3f} | {gaps[-1]:+.3f} | "
                     + (f"{wins[0]} of {wins[1]} clips |" if wins else "– |"))
    n = len(found)
    comparison = _comparison(found)
    p = comparison.pooled
    interval = f"paired 95 % interval [{p.low:+.3f}, {p.high:+.3f}] px"
    ahead = sum(g > 0 for g in gaps)
    lines.append("")
    # The protocol's rule (docs/protocol.md) over this data seed's training seeds.
    if comparison.verdict() == "B < A":
        lines.append(f"- Over {n} seeds, D3D's 3A decodes flow better than S3D-G's (mean "
                     f"gap {-p.mean:.3f} px, {interval} of D3D minus S3D-G; lower in {ahead} "
                     f"of {n} seeds): the direction of the paper's Fig. 4.")
    elif comparison.verdict() == "B > A":
        lines.append(f"- Over {n} seeds, D3D's 3A decodes flow **worse** than S3D-G's (mean "
                     f"gap {-p.mean:.3f} px, {interval}): the paper's Fig. 4 is not "
                     "reproduced here.")
    else:
        lines.append(f"- Over {n} seeds, **no reliable difference** at 3A: D3D's EPE is lower "
                     f"in {ahead} of {n} seeds ({interval} of D3D minus S3D-G includes 0).")
    return lines + [""]


def report_section(out_dir: str) -> list[str]:
    """Markdown lines of the probe section of the demo report (empty if no probe ran)."""
    from d3d_tf.probes import probe_tables

    runs = {n: probe_tables.load_runs([probe_dir(out_dir, n)])[0] for n, _, _ in PROBED
            if os.path.isfile(os.path.join(probe_dir(out_dir, n), probe_tables.PROBE_FILE))}
    if not runs:
        return []
    figures = os.path.join(out_dir, "probes")
    lines = probe_tables.report_lines(list(runs.values()), figures, heading="##")
    # report_lines links the PNGs relative to probes/; the report sits one level up.
    lines = [line.replace("](fig", "](probes/fig") for line in lines]
    lines += ["### What the probes show", ""] + interpretation(runs) + [""]
    return lines + seed_lines(out_dir)
