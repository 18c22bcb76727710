"""probe.json files (`d3d_tf.probes.task`) -> D3D's Table 1, Fig. 4 and Fig. 5.

    runs = load_runs(["probes/s3dg_pwc", "probes/d3d_pwc", "probes/teacher_pwc"])
    table1(runs)                          # markdown: decoder x modality at 3A
    fig4(runs, "fig4.png")                # EPE vs layer, one line per model (frozen / ft)
    fig5(runs[:2], "fig5.png")            # RGB frame, pooled TV-L1, each model's predicted flow

All EPEs are in pixels of the network's input frame (see `d3d_tf.probes.flow_probe`).
"""
from __future__ import annotations

import json
import os

import numpy as np

from d3d_tf.core import atomic

PROBE_FILE = "probe.json"
EXAMPLES_FILE = "examples.npz"
# Layer order of Fig. 4 (S3D-G's endpoints, the paper's short names).
LAYERS = ("1A", "2A", "2B", "2C", "3A", "3B", "3C", "4A", "4B", "4C", "4D", "4E", "4F", "5A",
          "5B", "5C")
DECODER_ORDER = {"simple": 0, "spatial": 1, "pwc": 2}


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
    rows.sort(key=lambda x: (x[0]["modality"] != "flow", DECODER_ORDER.get(x[0]["decoder"], 9),
                             x[0]["label"], x[0].get("finetune", False)))
    for run, r in rows:
        decoder = run["decoder"].capitalize() if run["decoder"] != "pwc" else "PWC"
        if run.get("pwc_dense"):
            decoder += " (dense)"
        lines.append(f"| {decoder} | {'Flow' if run['modality'] == 'flow' else 'RGB'} | "
                     f"{run['label']} | {'ft' if run.get('finetune') else 'frozen'} | "
                     f"{r['epe']:.3f} | {r['zeros_epe']:.3f} |")
    return "\n".join(lines)


def legend_names(runs) -> list[str]:
    """One distinct legend entry per run: its label, decoder and frozen/ft (plus the input
    modality of flow runs and the dense PWC variant); runs still alike get their folder."""
    names = []
    for run in runs:
        decoder = run["decoder"] + (" dense" if run.get("pwc_dense") else "")
        parts = [decoder, "ft" if run.get("finetune") else "frozen"]
        if run.get("modality") == "flow":
            parts.append("flow input")
        names.append(f"{run['label']} ({', '.join(parts)})")
    for i, name in enumerate(names):
        if names.count(name) > 1:
            folder = os.path.basename(run_dir) if (run_dir := runs[i].get("dir")) else str(i)
            names[i] = f"{name} [{folder}]"
    return names


def zeros_references(runs, layers) -> list[tuple[list[int], dict[str, float]]]:
    """All-zeros EPE per layer, one reference per evaluation set: the runs whose all-zeros EPEs
    agree at every layer they share (same clips, same grid) form a group; returns
    [(indices of the group's runs, {alias: zeros EPE})], the layers taken from any run of the
    group that probed them."""
    groups = []
    for i, run in enumerate(runs):
        zeros = {r["alias"]: float(r["zeros_epe"]) for r in run["results"] if r["alias"] in layers}
        for members, ref in groups:
            shared = set(ref) & set(zeros)
            if shared and all(np.isclose(ref[a], zeros[a], rtol=1e-5) for a in shared):
                members.append(i)
                ref.update({a: v for a, v in zeros.items() if a not in ref})
                break
        else:
            groups.append(([i], dict(zeros)))
    return [(members, ref) for members, ref in groups if ref]


def _and(words) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def fig4(runs, path: str) -> str:
    """EPE vs layer, one line per run (colour: model label, marker: decoder, dashed:
    fine-tuned), grey dotted with crosses: the all-zeros EPE of each run's evaluation clips
    at each layer (one line per distinct evaluation set).

    Writes a PNG at `path` and returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    used = [a for a in LAYERS if any(result_at(run, a) for run in runs)]
    used += sorted({r["alias"] for run in runs for r in run["results"]} - set(used))
    x = {a: i for i, a in enumerate(used)}
    labels = list(dict.fromkeys(run["label"] for run in runs))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = {"simple": "s", "spatial": "^", "pwc": "o"}
    names = legend_names(runs)
    for run, name in zip(runs, names):
        pts = sorted((x[r["alias"]], r["epe"]) for r in run["results"] if r["alias"] in x)
        if pts:
            ax.plot(*zip(*pts), marker=markers.get(run["decoder"], "D"), markersize=7,
                    linestyle="--" if run.get("finetune") else "-",
                    color=colours[labels.index(run["label"]) % len(colours)], label=name)
    refs = zeros_references(runs, x)
    for g, (members, ref) in enumerate(refs):
        label = "all zeros"
        if len(refs) > 1:
            data = {str(runs[i].get("eval_data")) for i in members}
            label += (f" (clips of {data.pop()})" if len(data) == 1 else
                      f" (clips of {', '.join(names[i] for i in members)})")
        pts = sorted((x[a], v) for a, v in ref.items())
        ax.plot(*zip(*pts), color=str(0.35 + 0.25 * (g % 3)), linestyle=":", marker="x",
                markersize=8, linewidth=2, label=label, zorder=3)
    ax.set_xticks(range(len(used)), used, fontsize=10)
    ax.tick_params(axis="y", labelsize=10)
    ax.set_xlabel("layer the decoder reads", fontsize=10)
    ax.set_ylabel("EPE (px of the input frame), lower is better", fontsize=10)
    decoders = sorted({run["decoder"] for run in runs}, key=lambda d: (DECODER_ORDER.get(d, 9), d))
    ax.set_title(f"Predicting optical flow from each layer ({_and(decoders)} "
                 f"decoder{'s' if len(decoders) > 1 else ''})", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def fig5(runs, path: str, *, alias: str = "3A", count: int = 3) -> str:
    """D3D's Fig. 5 (two runs) and appendix Fig. 6 (more, e.g. S3D-G, D3D, D3D ft) for `count`
    clips (columns): the RGB input frame, pooled TV-L1, and the flow predicted by each of
    `runs` (probe.json dicts, two or more) at `alias` (rows, in the order given), middle time
    step, as `flow_to_color` pictures (one colour scale per clip). The RGB row needs a run that
    kept its frames (examples.npz `frame`, written by probes of RGB models); without one it is
    left out and the title says so. Writes the PNG.

    Raises ValueError for fewer than two runs or when the runs did not keep examples of the
    same clips at `alias`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from d3d_tf.data.flow import flow_to_color

    runs = list(runs)
    if len(runs) < 2:
        raise ValueError(f"Fig. 5 compares two or more probe runs, got {len(runs)}")
    ex = []
    for run in runs:
        f = os.path.join(run["dir"], alias, EXAMPLES_FILE)
        if not os.path.isfile(f):
            raise ValueError(f"{run['dir']}: no {alias}/{EXAMPLES_FILE} (probe {alias} with "
                             "--examples > 0)")
        with np.load(f) as data:
            ex.append({k: data[k] for k in data.files})
    n = min([count] + [len(e["pred"]) for e in ex])
    for run, e in zip(runs[1:], ex[1:]):
        if n == 0 or list(ex[0]["video_ids"][:n]) != list(e["video_ids"][:n]):
            raise ValueError(f"{runs[0]['dir']} and {run['dir']} kept no common example clips:"
                             " probe both on the same --eval_data")
    frames = next((e["frame"] for e in ex if len(e.get("frame", ())) >= n), None)
    rows = ([("RGB frame", None)] if frames is not None else []) + [
        ("TV-L1 (pooled)", "target")] + [
        (f"{name}\npredicted", k) for k, name in enumerate(legend_names(runs))]
    fig, axes = plt.subplots(len(rows), n, figsize=(2.6 * n + 1.2, 2.4 * len(rows) + 0.8),
                             squeeze=False)
    t = ex[0]["target"].shape[1] // 2
    for i in range(n):
        fields = {"target": ex[0]["target"][i, t],
                  **{k: e["pred"][i, t] for k, e in enumerate(ex)}}
        vmax = max(float(np.hypot(f[..., 0], f[..., 1]).max()) for f in fields.values())
        for j, (row, key) in enumerate(rows):
            ax = axes[j, i]
            if key is None:
                ax.imshow(frames[i])
            else:
                ax.imshow(flow_to_color(fields[key], max_magnitude=vmax),
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(row, fontsize=10)
        axes[0, i].set_title(str(ex[0]["video_ids"][i]), fontsize=10)
    grid = "x".join(str(s) for s in ex[0]["target"].shape[2:4])
    note = "" if frames is not None else "\n(no RGB frames kept by these runs: probe again)"
    fig.suptitle(f"Flow predicted at {alias} ({grid} cells, middle time step)\n"
                 f"colour = direction, saturation = magnitude (one scale per clip){note}",
                 fontsize=11)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def write_report(probes, out_dir: str, *, endpoint: str = "3A", fig5_runs=(),
                 heading: str = "#", fig5_clips: int = 3) -> str:
    """OUT/report.md with Table 1 at `endpoint`, Fig. 4 and (given two frozen RGB runs, or
    `fig5_runs`: two or more, a row each) Fig. 5 of `fig5_clips` clips, next to their PNGs;
    returns the path of report.md."""
    runs = load_runs(probes)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "report.md")
    with atomic.open_for_write(path, "w") as f:
        f.write("\n".join(report_lines(runs, out_dir, endpoint=endpoint, heading=heading,
                                        fig5_runs=load_runs(fig5_runs) if fig5_runs else (),
                                        fig5_clips=fig5_clips)))
    return path


def report_lines(runs, out_dir: str, *, endpoint: str = "3A", heading: str = "#",
                 fig5_runs=(), fig5_clips: int = 3) -> list[str]:
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
    if len(pair) >= 2:
        name = f"fig5_flow_{endpoint.lower()}.png"
        try:
            fig5(pair, os.path.join(out_dir, name), alias=endpoint, count=fig5_clips)
        except ValueError as e:
            if fig5_runs:  # asked for: an error; the default pair: a note
                raise
            lines += [f"(Fig. 5 not drawn: {e})", ""]
        else:
            lines += [f"{h}# Fig. 5: flow predicted at {endpoint}", "", f"![flows]({name})",
                      ""]
    return lines
