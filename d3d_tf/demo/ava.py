"""The demo's AVA comparison (the D3D paper's Table 5): stage commands, the paired frame-mAP
comparison and its report sections.

With `python -m d3d_tf.demo --ava=true`, every data seed's out_dir also gets, under `ava/`:

    videos/     the built-in multi-actor data (configs/demo/ava_synthetic.flags) drawn with
                the generator seed `ava_data_seed(data seed)`, i.e. the data seed itself
    records/    its keyframe records (configs/demo/ava_prepare.flags), prepared once
    runs/{baseline,d3d}<suffix>/   per training seed, two detectors (configs/demo/ava.flags,
                --seed=<training seed>) whose backbones are initialised from that training
                seed's classification runs, `runs/baseline<suffix>/model` (S3D-G) and
                `runs/d3d<suffix>/model` (D3D); every other setting and the data are equal
    eval/{baseline,d3d}<suffix>/   `evaluate --task=ava` on the val keyframes

The comparison reads back both detectors' `detections.csv` with the val ground truth and
recomputes frame-mAP on every bootstrap resample of the val videos
(`ava_map.VideoResampledMap`, `paired.compare_statistic`): frame-mAP is not a mean over videos,
so the protocol's paired bootstrap recomputes it, for both detectors on the same resample.
Used by `d3d_tf.demo.run` and `d3d_tf.demo.report`; this module defines no flags.
"""
from __future__ import annotations

import json
import os

from d3d_tf.demo import protocol
from d3d_tf.demo.stages import Stage
from d3d_tf.demo.stages import python_module as _python_module

AVA_DIR = "ava"
# run name (its classification run gives the backbone), label in the report
DETECTORS = (("baseline", "S3D-G backbone"), ("d3d", "D3D backbone"))
CONFIGS = ("ava_synthetic.flags", "ava_prepare.flags", "ava.flags")
# File names the multi-actor generator writes (d3d_tf.ava.synthetic_ava).
LABEL_MAP = "ava_action_list_v2.2.pbtxt"


def ava_data_seed(data_seed: int) -> int:
    """The multi-actor generator's --seed for a data seed: the data seed itself (the generator
    derives its per-video seeds from (seed, 1729, video), the classification generator from
    (seed, class, video), so their random streams differ)."""
    return int(data_seed)


def missing_configs(configs: str) -> list[str]:
    """The AVA flagfiles absent from the demo's configs folder."""
    return [os.path.join(configs, f) for f in CONFIGS
            if not os.path.isfile(os.path.join(configs, f))]


def _paths(out_dir: str) -> dict[str, str]:
    root = os.path.join(out_dir, AVA_DIR)
    videos = os.path.join(root, "videos")
    return {"root": root, "videos": videos, "records": os.path.join(root, "records"),
            "val_groundtruth": os.path.join(videos, "ava_val_v2.2.csv"),
            "val_excluded": os.path.join(videos, "ava_val_excluded_timestamps_v2.2.csv"),
            "label_map": os.path.join(videos, LABEL_MAP)}


def run_dir(out_dir: str, name: str, seed: int) -> str:
    return os.path.join(out_dir, AVA_DIR, "runs", name + protocol.run_suffix(seed))


def eval_dir(out_dir: str, name: str, seed: int) -> str:
    return os.path.join(out_dir, AVA_DIR, "eval", name + protocol.run_suffix(seed))


def stages(out_dir: str, configs: str, train_seeds: int, data_seed: int,
           workers: int = 0) -> list[Stage]:
    """The AVA stages of one data seed's out_dir: data and records once, then per training
    seed the S3D-G- and the D3D-initialised detector and their evaluation. Needs the
    classification runs `runs/{baseline,d3d}<suffix>/model` of `out_dir`."""
    p = _paths(out_dir)
    videos, records = p["videos"], p["records"]
    out = [Stage("ava_synthetic", _python_module(
        "synthetic", f"--flagfile={os.path.join(configs, 'ava_synthetic.flags')}",
        f"--out_dir={videos}", f"--workers={workers}", f"--seed={ava_data_seed(data_seed)}"))]
    for split in ("train", "val"):
        out.append(Stage(f"ava_prepare_{split}", _python_module(
            "prepare", f"--flagfile={os.path.join(configs, 'ava_prepare.flags')}",
            f"--split={split}", f"--annotations={videos}/ava_{split}_v2.2.csv",
            f"--excluded={videos}/ava_{split}_excluded_timestamps_v2.2.csv",
            f"--person_boxes={videos}/person_boxes_{split}.csv",
            f"--label_map={p['label_map']}", f"--video_dir={os.path.join(videos, 'videos')}",
            f"--out_dir={records}", f"--workers={workers}")))
    val = os.path.join(records, "val-*.tfrecord")
    for seed in range(train_seeds):
        suffix = protocol.run_suffix(seed)
        for name, _ in DETECTORS:
            out.append(Stage(f"ava_train_{name}{suffix}", _python_module(
                "train", f"--flagfile={os.path.join(configs, 'ava.flags')}",
                f"--init_from={os.path.join(out_dir, 'runs', name + suffix, 'model')}",
                f"--seed={seed}", f"--model_dir={run_dir(out_dir, name, seed)}",
                f"--train_data={os.path.join(records, 'train-*.tfrecord')}",
                f"--eval_data={val}")))
        for name, _ in DETECTORS:
            out.append(Stage(f"ava_evaluate_{name}{suffix}", _python_module(
                "evaluate", "--task=ava", f"--model_dir={run_dir(out_dir, name, seed)}",
                f"--data={val}", f"--ava_groundtruth={p['val_groundtruth']}",
                f"--ava_excluded={p['val_excluded']}", f"--ava_label_map={p['label_map']}",
                f"--out_dir={eval_dir(out_dir, name, seed)}")))
    return out


def _detections(out_dir: str, name: str, seed: int) -> str:
    path = os.path.join(eval_dir(out_dir, name, seed), "detections.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the AVA evaluation of training seed {seed} "
                                "has not run (rerun the demo with --ava; finished stages are "
                                "reused)")
    return path


def cells(dirs: dict[int, str], train_seeds: int, a: str = "baseline",
          b: str = "d3d"):
    """One `paired.StatisticCell` per (data seed, training seed): frame-mAP of detectors `a`
    and `b` on the val ground truth, as functions of the val videos' bootstrap weights (the
    videos of every ground-truth or detection keyframe, sorted, the same for every training
    seed of a data seed). FileNotFoundError naming the file while one is missing."""
    from d3d_tf.ava import ava
    from d3d_tf.ava import frame_map as ava_map
    from d3d_tf.metrics import paired

    out = []
    for data_seed, out_dir in dirs.items():
        p = _paths(out_dir)
        label_map = ava.read_label_map(p["label_map"])
        gt = ava.read_boxes(p["val_groundtruth"], label_map=label_map)
        excluded = ava.read_excluded(p["val_excluded"])
        dets = {(n, s): ava.read_boxes(_detections(out_dir, n, s), scores=True)
                for s in range(train_seeds) for n in (a, b)}
        videos = ava_map.scored_videos(gt, *dets.values(), excluded=excluded)
        for s in range(train_seeds):
            stat_a, stat_b = (ava_map.VideoResampledMap(gt, dets[(n, s)], label_map, excluded,
                                                        videos=videos) for n in (a, b))
            out.append(paired.StatisticCell(data_seed, s, len(videos), stat_a, stat_b))
    return out


def _chance(dirs: dict[int, str], train_seeds: int) -> dict[int, float]:
    """data seed -> mean frame-mAP of uniform random scores on the evaluated boxes
    (`results.json`), over its evaluations."""
    out = {}
    for data_seed, out_dir in dirs.items():
        values = []
        for s in range(train_seeds):
            for n, _ in DETECTORS:
                path = os.path.join(eval_dir(out_dir, n, s), "results.json")
                if os.path.isfile(path):
                    with open(path) as f:
                        values.append(json.load(f).get("random_scores_frame_mAP"))
        values = [v for v in values if v is not None]
        if values:
            out[data_seed] = sum(values) / len(values)
    return out


def has_ava(out_dir: str) -> bool:
    """Whether the AVA stages ran (or started) in this data seed's out_dir."""
    return os.path.isdir(os.path.join(out_dir, AVA_DIR))


def section_lines(dirs: dict[int, str], train_seeds: int, *, draws: int | None = None
                  ) -> list[str]:
    """The AVA comparison over `dirs` (data seed -> out_dir): frame-mAP of both detectors per
    data seed and pooled, the paired interval and the rule's outcome, worded neutrally (the
    protocol seeks no claim here)."""
    from d3d_tf.metrics import paired

    (a, la), (b, lb) = DETECTORS
    try:
        result = paired.compare_statistic(cells(dirs, train_seeds, a, b),
                                          **({"draws": draws} if draws else {}))
    except FileNotFoundError as e:
        return [f"- missing AVA results: {e}"]
    which = "training seed 0" if train_seeds == 1 else f"training seeds 0–{train_seeds - 1}"
    lines = [("Frame-mAP (IoU 0.5, ×100) of two detectors trained alike on the built-in "
              "multi-actor data, one with its backbone initialised from the D3D run of the "
              "same data and training seed, one from the S3D-G baseline run (the paper's "
              f"Table 5; {which} of each data seed), recomputed from their `detections.csv` "
              "on the val keyframes; the interval resamples the val videos and recomputes both "
              "detectors' frame-mAP on each resample (docs/protocol.md). The protocol reports "
              "this comparison either way: it seeks no claim here."), ""]
    lines += protocol.comparison_lines(result, a=la, b=lb)
    per_cell = ", ".join(f"data seed {d} / training seed {s}: {100 * g:+.1f}"
                         for (d, s), g in result.cells.items())
    lines.append(f"- Per cell, {lb} − {la} (points): {per_cell}.")
    chance = _chance(dirs, train_seeds)
    if chance:
        lines.append("- Uniform random scores on the same boxes (the chance level of "
                     "frame-mAP): " + ", ".join(f"data seed {d}: {100 * v:.1f}"
                                                for d, v in chance.items()) + ".")
    return lines


def report_section(out_dir: str, seeds: int, data_seed: int) -> list[str]:
    """`report.md`'s AVA section (empty when the AVA stages did not run here)."""
    if not has_ava(out_dir):
        return []
    return (["## AVA: D3D backbone against S3D-G backbone (cf. the paper's Table 5)", ""]
            + section_lines({data_seed: out_dir}, seeds) + [""])


def protocol_section(dirs: dict[int, str], seeds: int) -> list[str]:
    """`protocol.md`'s AVA section (empty when no data seed ran the AVA stages)."""
    if not any(has_ava(d) for d in dirs.values()):
        return []
    title = "## AVA: D3D backbone against S3D-G backbone (frame-mAP, cf. the paper's Table 5)"
    return ["", title, ""] + section_lines(dirs, seeds)
