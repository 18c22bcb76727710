"""probe.json files (`d3d_tf.training.probe`) -> D3D's Table 1, Fig. 4 and Fig. 5.

    runs = load_runs(["probes/s3dg_pwc", "probes/d3d_pwc", "probes/teacher_pwc"])
    table1(runs)                          # markdown: decoder x modality at 3A
    fig4(runs, "fig4.png")                # EPE vs layer, one line per model (frozen / ft)
    fig5(runs[0], runs[1], "fig5.png")    # pooled TV-L1 next to two models' predicted flow

All EPEs are in pixels of the network's input frame (see `d3d_tf.metrics.flow_probe`).
"""
from __future__ import annotations

import json
import os

import numpy as np

from d3d_tf import atomic

PROBE_FILE = "probe.json"
EXAMPLES_FILE = "examples.npz"
# Layer order of Fig. 4 (S3D-G's endpoints, the paper's short names).
LAYERS = ("1A", "2A", "2B", "2C", "3A", "3B", "3C", "4A", "4B", "4C", "4D", "4E", "4F", "5A",
          "5B", "5C")


def load_runs(paths) -> list[dict]:
    """probe.json contents of `paths` (files or the directories holding them), each with its
    directory under `dir`. FileNotFoundError naming the path when one has no probe.json."""
    runs = []
    for p in paths:
        path = os.path.join(p, PROBE_FILE) if os.path.isdir(p) else p
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{p}: no {PROBE_FILE} (run python -m d3d_tf.probe first)")
        with open(path) as f:
            run = json.load(f)
        run["dir"] = os.path.dirname(os.path.abspath(path))
        runs.append(run)
    if not runs:
        raise ValueError("no probe runs given")
    return runs


def run_name(run: dict) -> str:
    """`label` plus ` ft` for fine-tuned runs (the paper's legend)."""
    return run["label"] + (" ft" if run.get("finetune") else "")


def result_at(run: dict, alias: str) -> dict | None:
    return next((r for r in run["results"] if r["alias"] == alias), None)


def table1(runs, alias: str = "3A") -> str:
    """Markdown Table 1: an all-zeros row, then one row per run probed at `alias`."""
    rows = [(run, result_at(run, alias)) for run in runs]
    rows = [(run, r) for run, r in rows if r is not None]
    if not rows:
        return f"(no probe run has a result at {alias})"
    zeros = rows[0][1]["zeros_epe"]
    lines = [(f"| Decoder | Modality | Model | Backbone | EPE at {alias} (px) | all zeros, "
              "same clips (px) |"), "| --- | --- | --- | --- | ---: | ---: |",
             f"| All zeros | – | – | – | {zeros:.3f} | {zeros:.3f} |"]
    order = {"simple": 0, "spatial": 1, "pwc": 2}
    rows.sort(key=lambda x: (x[0]["modality"] != "flow", order.get(x[0]["decoder"], 9),
                             x[0]["label"], x[0].get("finetune", False)))
    for run, r in rows:
        decoder = run["decoder"].capitalize() if run["decoder"] != "pwc" else "PWC"
        if run.get("pwc_dense"):
            decoder += " (dense)"
        lines.append(f"| {decoder} | {'Flow' if run['modality'] == 'flow' else 'RGB'} | "
                     f"{run['label']} | {'ft' if run.get('finetune') else 'frozen'} | "
                     f"{r['epe']:.3f} | {r['zeros_epe']:.3f} |")
    return "\n".join(lines)


def fig4(runs, path: str) -> str:
    """EPE vs layer, one line per run (dashed: fine-tuned), grey: all zeros of the first run.

    Writes a PNG at `path` and returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    used = [a for a in LAYERS if any(result_at(run, a) for run in runs)]
    x = {a: i for i, a in enumerate(used)}
    for run in runs:
        pts = [(x[r["alias"]], r["epe"]) for r in run["results"] if r["alias"] in x]
        if pts:
            ax.plot(*zip(*pts), marker="o", linestyle="--" if run.get("finetune") else "-",
                    label=run_name(run))
    zeros = [(x[r["alias"]], r["zeros_epe"]) for r in runs[0]["results"] if r["alias"] in x]
    ax.plot(*zip(*zeros), color="grey", linestyle=":", label="all zeros")
    ax.set_xticks(range(len(used)), used)
    ax.set_xlabel("layer the decoder reads")
    ax.set_ylabel("EPE (px of the input frame)")
    ax.set_title(f"Predicting optical flow from each layer ({runs[0]['decoder']} decoder)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def fig5(run_a: dict, run_b: dict, path: str, *, alias: str = "3A", count: int = 3) -> str:
    """Pooled TV-L1 next to the flow predicted by two runs at `alias`, `count` clips, middle
    time step, as `flow_to_color` pictures (one colour scale per clip). Writes the PNG.

    Raises ValueError when the runs did not keep examples of the same clips at `alias`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from d3d_tf.data.flow import flow_to_color

    ex = []
    for run in (run_a, run_b):
        f = os.path.join(run["dir"], alias, EXAMPLES_FILE)
        if not os.path.isfile(f):
            raise ValueError(f"{run['dir']}: no {alias}/{EXAMPLES_FILE} (probe {alias} with "
                             "--examples > 0)")
        with np.load(f) as data:
            ex.append({k: data[k] for k in data.files})
    n = min(count, len(ex[0]["pred"]), len(ex[1]["pred"]))
    if n == 0 or list(ex[0]["video_ids"][:n]) != list(ex[1]["video_ids"][:n]):
        raise ValueError(f"{run_a['dir']} and {run_b['dir']} kept no common example clips: "
                         "probe both on the same --eval_data")
    cols = ("TV-L1 (pooled)", run_name(run_a), run_name(run_b))
    fig, axes = plt.subplots(n, 3, figsize=(7, 2.4 * n), squeeze=False)
    for i in range(n):
        t = ex[0]["target"].shape[1] // 2
        fields = (ex[0]["target"][i, t], ex[0]["pred"][i, t], ex[1]["pred"][i, t])
        vmax = max(float(np.hypot(f[..., 0], f[..., 1]).max()) for f in fields)
        for j, (f, title) in enumerate(zip(fields, cols)):
            ax = axes[i, j]
            ax.imshow(flow_to_color(f, max_magnitude=vmax), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
        axes[i, 0].set_ylabel(str(ex[0]["video_ids"][i]), fontsize=8)
    grid = "x".join(str(s) for s in ex[0]["target"].shape[2:4])
    fig.suptitle(f"Flow at {alias} ({grid} cells, middle time step); colour = direction, "
                 "saturation = magnitude", fontsize=9)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def write_report(probes, out_dir: str, *, endpoint: str = "3A", fig5_runs=(),
                 heading: str = "#") -> str:
    """OUT/report.md with Table 1 at `endpoint`, Fig. 4 and (given two frozen RGB runs, or
    `fig5_runs`) Fig. 5, next to their PNGs; returns the path of report.md."""
    runs = load_runs(probes)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "report.md")
    with atomic.open_for_write(path, "w") as f:
        f.write("\n".join(report_lines(runs, out_dir, endpoint=endpoint, heading=heading,
                                        fig5_runs=load_runs(fig5_runs) if fig5_runs else ())))
    return path


def report_lines(runs, out_dir: str, *, endpoint: str = "3A", heading: str = "#",
                 fig5_runs=()) -> list[str]:
    """Markdown lines of the probe report; the PNGs are written into `out_dir` and linked
    relative to it."""
    h = heading
    lines = [f"{h} Motion probes", "", ("EPE in pixels of the network's input frame, on each "
                                         "run's evaluation clips (lower is better)."), "",
             f"{h}# Table 1: decoders at {endpoint}", "", table1(runs, endpoint), ""]
    if any(len(r["results"]) > 1 for r in runs):
        png = fig4(runs, os.path.join(out_dir, "fig4_epe_per_layer.png"))
        lines += [f"{h}# Fig. 4: EPE per layer", "", f"![EPE per layer]({os.path.basename(png)})",
                  ""]
    pair = list(fig5_runs) or [r for r in runs
                               if r["modality"] == "rgb" and not r.get("finetune")][:2]
    if len(pair) == 2:
        name = f"fig5_flow_{endpoint.lower()}.png"
        try:
            fig5(pair[0], pair[1], os.path.join(out_dir, name), alias=endpoint)
        except ValueError as e:
            if fig5_runs:  # asked for: an error; the default pair: a note
                raise
            lines += [f"(Fig. 5 not drawn: {e})", ""]
        else:
            lines += [f"{h}# Fig. 5: flow predicted at {endpoint}", "", f"![flows]({name})",
                      ""]
    return lines
