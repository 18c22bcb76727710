"""DistInit end to end on the built-in synthetic data: `make demo-distinit`.

    python -m d3d_tf.demo.distinit --out_dir=demo_out/distinit [--seeds=3] [--data_seeds=a,b]

Stages (each a `python -m d3d_tf.<tool>` command, printed before it runs; flagfiles in
`configs/demo/distinit/`): synthetic videos (an unlabeled pool, a small labeled action set
whose classes are shape x motion, and a large set of short clips, ImageNet's role) -> RGB
TFRecords (no flow) -> an image teacher (2D ResNet-18 on single frames of that image set,
labelled by the object's shape) -> its logits of every pool frame stored
with the pool's records -> DistInit pre-training of Res3D-18 and R(2+1)D-18 on the pool
(its labels unused) -> the teacher inflated into Res3D-18 -> per seed, fine-tuning on the
labeled set from scratch, from inflation (Res3D-18 only) and from DistInit, and their
evaluation -> first-layer filters and t-SNE of the initializations -> `report.md`.

Training seed s (`--seeds=N`: 0..N-1) runs its own DistInit pre-training of both students
and its own fine-tunings (`_seed<s>` folders from seed 1 on); the image teacher and its
inflation, the fixed "ImageNet" model every start is made from, run once per draw of the data.
With `--data_seeds=a,b` (or `--fresh_data_seeds=N`) the whole demo runs once per data seed, in
`<out_dir>/data_<seed>/`, its pool, labeled and image sets drawn with generator seeds 10·d,
10·d+1 and 10·d+2, and `<out_dir>/protocol.md` judges Table 1's order over all of them by the
evidence protocol (docs/protocol.md).
A finished stage leaves `<out_dir>/stages/<stage>.done`; rerunning skips it (see
`d3d_tf.demo.stages`). Details: docs/distinit.md.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shlex
import time

from d3d_tf.core import cli, config_flags
from d3d_tf.core.config_flags import field, section
from d3d_tf.data import synthetic
from d3d_tf.demo import distinit_report, protocol
from d3d_tf.demo.stages import Stage, marker_path, python_module, run_stage

NETWORKS = ("r3d_18", "r2plus1d_18")
# (method, network) of Table 1's rows; R(2+1)D-18 has no 2D counterpart to inflate.
FINETUNE_RUNS = (("scratch", "r3d_18"), ("inflated", "r3d_18"), ("distinit", "r3d_18"),
                 ("scratch", "r2plus1d_18"), ("distinit", "r2plus1d_18"))
SHAPES_DIR = distinit_report.SHAPES_DIR  # the pool labelled by shape (videos, records)
IMAGES_DIR = "image_shapes"  # the image set labelled by shape (videos, records)
FLAGFILES = ("pool", "labeled", "images", "prepare", "teacher", "distinit", "inflate",
             "finetune")
SYNTHETIC = tuple(distinit_report.generator_seeds(0))  # pool, labeled, images


@dataclasses.dataclass
class DemoConfig:
    """Flags of `python -m d3d_tf.demo.distinit`."""
    out_dir: str = field("demo_out/distinit", "Where every artifact of the demo goes.")
    seeds: int = field(1, "Training seeds 0..N-1: each pre-trains its own DistInit students "
                       "and fine-tunes every network; the report gives mean ± std.", min=1)
    r2plus1d_seeds: int | None = field(None, "Training seeds 0..N-1 of R(2+1)D-18 (its "
                                       "DistInit pre-training and fine-tunings), at most "
                                       "--seeds; unset: --seeds. Res3D-18 always runs --seeds.",
                                       min=1)
    configs: str = field("configs/demo/distinit", "Folder of the demo's flagfiles (pool, "
                         "labeled, images, prepare, teacher, distinit, inflate, finetune "
                         ".flags).")
    workers: int = field(0, "Worker processes for rendering and preparing videos "
                         "(0 = all cores).", min=0)
    draws: protocol.DataSeedsConfig = section(protocol.DataSeedsConfig, "Data seeds")
    data_seed: int | None = field(None, "The data seed this config's out_dir holds (None: the "
                                  "flagfiles' seeds); set per data seed by `run`.", flag=False)


def network_seeds(c: DemoConfig) -> dict[str, int]:
    """network -> how many training seeds (0..N-1) it runs: `c.seeds`, R(2+1)D-18's
    `c.r2plus1d_seeds` when set (ValueError when it exceeds `c.seeds`)."""
    return {"r3d_18": c.seeds,
            "r2plus1d_18": protocol.first_seeds("r2plus1d_seeds", c.r2plus1d_seeds, c.seeds)}


def _runs_seed(c: DemoConfig, network: str, seed: int) -> bool:
    """Whether `network` trains with training seed `seed` (only R(2+1)D-18 can stop early)."""
    return network != "r2plus1d_18" or c.r2plus1d_seeds is None or seed < c.r2plus1d_seeds


def run_name(method: str, network: str, seed: int = 0) -> str:
    """Fine-tuning run / evaluation name, e.g. `distinit_r3d_18`; `_seed<N>` from seed 1 on,
    so that `--seeds=3` after `--seeds=1` reuses the first seed's runs."""
    return f"{method}_{network}" + distinit_report.run_suffix(seed)


def write_shape_manifest(pool_dir: str, out_dir: str) -> str:
    """A synthetic dataset's manifest with each video's shape as its label:
    `out_dir/manifest.csv` (paths relative to `out_dir`) and `labels.txt` (the shapes in the
    generator's order)."""
    source = os.path.join(pool_dir, "manifest.csv")
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "shape" not in rows[0]:
        raise ValueError(f"{source}: no 'shape' column (regenerate with d3d_tf.synthetic)")
    os.makedirs(out_dir, exist_ok=True)
    rel = os.path.relpath(pool_dir, out_dir)
    path = os.path.join(out_dir, "manifest.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label_name", "split"])
        for row in rows:
            writer.writerow([os.path.join(rel, row["path"]), row["shape"], row["split"]])
    shapes = {row["shape"] for row in rows}
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("".join(f"{s}\n" for s in synthetic.SHAPE_NAMES if s in shapes))
    return path


def _flagfile(configs: str, name: str) -> str:
    return f"--flagfile={os.path.join(configs, name + '.flags')}"


def pretraining_stages(c: DemoConfig) -> list[Stage]:
    """Data (drawn with `c.data_seed`'s generator seeds when set), the image teacher, its
    stored logits, DistInit of both students for every training seed, inflation."""
    out, videos, records = c.out_dir, os.path.join(c.out_dir, "videos"), \
        os.path.join(c.out_dir, "records")
    runs = os.path.join(out, "runs")
    generator = ({} if c.data_seed is None
                 else distinit_report.generator_seeds(c.data_seed))
    stages = [Stage(f"synthetic_{name}", python_module(
        "synthetic", _flagfile(c.configs, name), f"--out_dir={os.path.join(videos, name)}",
        f"--workers={c.workers}", *([f"--seed={generator[name]}"] if generator else [])))
        for name in SYNTHETIC]
    for data, splits in ((SHAPES_DIR, ("train", "test")), ("labeled", ("train", "test")),
                         (IMAGES_DIR, ("train",))):
        manifest = os.path.join(videos, data, "manifest.csv")
        for split in splits:
            stages.append(Stage(f"prepare_{data}_{split}", python_module(
                "prepare", _flagfile(c.configs, "prepare"), f"--annotations={manifest}",
                f"--split={split}", f"--out_dir={os.path.join(records, data)}",
                f"--workers={c.workers}")))
    pool, images = os.path.join(records, SHAPES_DIR), os.path.join(records, IMAGES_DIR)
    teacher = os.path.join(runs, "image_teacher", "model")
    # Trained on the image set, evaluated on the pool's held-out videos (the same labels).
    stages.append(Stage("train_image_teacher", python_module(
        "train", _flagfile(c.configs, "teacher"), f"--model_dir={os.path.dirname(teacher)}",
        f"--train_data={os.path.join(images, 'train-*.tfrecord')}",
        f"--eval_data={os.path.join(pool, 'test-*.tfrecord')}",
        f"--labels={os.path.join(images, 'labels.txt')}")))
    targets = os.path.join(records, "pool_targets")
    stages.append(Stage("teacher_targets", python_module(
        "distinit_targets", f"--records={os.path.join(pool, 'train-*.tfrecord')}",
        f"--out_dir={targets}", f"--teachers={teacher}")))
    for seed in range(c.seeds):
        stages += distinit_stages(c, seed)
    stages.append(Stage("inflate_r3d_18", python_module(
        "convert_weights", _flagfile(c.configs, "inflate"), f"--source={teacher}",
        f"--out_dir={init_dir(out, 'inflated', 'r3d_18')}")))
    return stages


def distinit_stages(c: DemoConfig, seed: int) -> list[Stage]:
    """DistInit pre-training of both students with training seed `seed` (its initial weights
    and clip sampling), from the one image teacher's stored logits of the pool."""
    targets = os.path.join(c.out_dir, "records", "pool_targets")
    teacher = os.path.join(c.out_dir, "runs", "image_teacher", "model")
    suffix = distinit_report.run_suffix(seed)
    return [Stage(f"distinit_{network}{suffix}", python_module(
        "train", _flagfile(c.configs, "distinit"), f"--model={network}",
        f"--distinit_teachers={teacher}", "--distinit_precomputed",
        f"--train_data={os.path.join(targets, 'train-*.tfrecord')}",
        f"--labels={os.path.join(targets, 'labels.txt')}", f"--seed={seed}",
        f"--model_dir={os.path.dirname(init_dir(c.out_dir, 'distinit', network, seed))}"))
        for network in NETWORKS if _runs_seed(c, network, seed)]


def init_dir(out: str, method: str, network: str, seed: int = 0) -> str | None:
    """Model directory a fine-tuning with training seed `seed` starts from (None: from
    scratch). Inflation is one per out_dir; DistInit is pre-trained per training seed."""
    if method == "scratch":
        return None
    if method == "inflated":
        return os.path.join(out, "runs", f"inflated_{network}", "model")
    return os.path.join(out, "runs", f"distinit_{network}{distinit_report.run_suffix(seed)}",
                        "model")


def seed_stages(c: DemoConfig, seed: int) -> list[Stage]:
    """The five fine-tunings of one seed on the labeled set (three from seed
    `c.r2plus1d_seeds` on: Res3D-18's), then their evaluation."""
    labeled = os.path.join(c.out_dir, "records", "labeled")
    stages, names, model_dirs = [], [], []
    for method, network in FINETUNE_RUNS:
        if not _runs_seed(c, network, seed):
            continue
        name = run_name(method, network, seed)
        run_dir = os.path.join(c.out_dir, "runs", "finetune", name)
        init = init_dir(c.out_dir, method, network, seed)
        task = ["--task=classify", f"--model={network}"] if init is None else [
            "--task=finetune", f"--init_from={init}"]
        stages.append(Stage(f"finetune_{name}", python_module(
            "train", _flagfile(c.configs, "finetune"), *task, f"--seed={seed}",
            f"--model_dir={run_dir}", f"--train_data={os.path.join(labeled, 'train-*.tfrecord')}",
            f"--labels={os.path.join(labeled, 'labels.txt')}")))
        names.append(run_name(method, network))
        model_dirs.append(os.path.join(run_dir, "model"))
    suffix = distinit_report.run_suffix(seed)
    stages.append(Stage(f"evaluate{suffix}", python_module(
        "evaluate", f"--data={os.path.join(labeled, 'test-*.tfrecord')}",
        f"--out_dir={os.path.join(c.out_dir, 'eval' + suffix)}",
        *[f"--model_dir={d}" for d in model_dirs], *[f"--name={n}" for n in names],
        "--compare=inflated_r3d_18,distinit_r3d_18", "--num_clips=2")))
    return stages


def representation_stages(c: DemoConfig) -> list[Stage]:
    """Filters and t-SNE (on every labeled video) of the three initializations and, for
    reference, of seed 0's Res3D-18 trained from scratch on the labels."""
    data = os.path.join(c.out_dir, "records", "labeled", "*.tfrecord")
    models = {f"{m}_{n}": init_dir(c.out_dir, m, n) for m, n in FINETUNE_RUNS if m != "scratch"}
    models["scratch_r3d_18"] = os.path.join(c.out_dir, "runs", "finetune", "scratch_r3d_18",
                                            "model")
    return [Stage(f"representation_{name}", python_module(
        "representation", f"--model_dir={model}", f"--data={data}",
        f"--out_dir={os.path.join(c.out_dir, 'representation', name)}"))
        for name, model in models.items()]


def run(c: DemoConfig) -> str:
    """Runs (or reuses) every stage, once per data seed when `c` names some, and writes the
    report (`protocol.md` over the data seeds, else `report.md`); returns its path."""
    config_flags.check(c)
    network_seeds(c)
    missing = [f"{n}.flags" for n in FLAGFILES
               if not os.path.isfile(os.path.join(c.configs, f"{n}.flags"))]
    if missing:
        raise FileNotFoundError(f"--configs={c.configs} lacks {', '.join(missing)}")
    os.makedirs(c.out_dir, exist_ok=True)
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.time()
    data_seeds = protocol.resolve_data_seeds(c.out_dir, c.draws.data_seeds,
                                       c.draws.fresh_data_seeds)
    if not data_seeds:
        path = run_data_seed(c)
    else:
        dirs = data_seed_dirs(c.out_dir, data_seeds)
        for i, (d, folder) in enumerate(dirs.items()):
            print(f"\n[demo] data seed {d} ({i + 1} of {len(dirs)}) in {folder}", flush=True)
            run_data_seed(dataclasses.replace(c, out_dir=folder, data_seed=d))
        path = distinit_report.write_protocol_report(c.out_dir, dirs,
                                                     seeds=network_seeds(c))
    print(f"\n[demo] finished in {time.time() - start:.0f} s (stages reused from earlier runs "
          f"are not counted); report: {path}")
    return path


def data_seed_dirs(out_dir: str, data_seeds) -> dict[int, str]:
    """data seed -> the folder its whole demo runs in, `<out_dir>/data_<seed>`."""
    return {d: os.path.join(out_dir, f"data_{d}") for d in data_seeds}


def check_finetune_starts(c: DemoConfig) -> None:
    """ValueError naming the marker when a finished fine-tuning of `c.out_dir` started from
    another model than its stage would now (an out_dir of an older demo, whose training seeds
    all fine-tuned seed 0's DistInit students): reusing it would pass it off as its seed's."""
    for seed in range(c.seeds):
        for stage in seed_stages(c, seed):
            marker = marker_path(c.out_dir, stage.name)
            init = [a for a in stage.command if a.startswith("--init_from=")]
            if not init or not os.path.exists(marker):
                continue
            with open(marker) as f:
                recorded = shlex.split(json.load(f).get("command", ""))
            if init[0] not in recorded:
                was = [a for a in recorded if a.startswith("--init_from=")] or ["no --init_from"]
                run_dir = _flag_value(stage.command, "model_dir")
                raise ValueError(
                    f"{marker} records a fine-tuning from {was[0]}, not {init[0]} (an older "
                    "demo's, whose training seeds shared seed 0's DistInit): delete "
                    f"{run_dir}, that marker and {marker_path(c.out_dir, 'evaluate')[:-5]}"
                    f"{distinit_report.run_suffix(seed)}.done, or use a new --out_dir")


def _flag_value(command: list, name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


def run_data_seed(c: DemoConfig) -> str:
    """Every stage on one draw of the data (`c.data_seed`, None = the flagfiles' seeds) in
    `c.out_dir`, then its `report.md`; returns the report's path."""
    os.makedirs(c.out_dir, exist_ok=True)
    check_finetune_starts(c)
    stages = pretraining_stages(c)
    for stage in stages[:len(SYNTHETIC)]:
        run_stage(c.out_dir, stage)
    # In-process and cheap: the image teacher's labels, rewritten on every run.
    videos = os.path.join(c.out_dir, "videos")
    for source, target in (("pool", SHAPES_DIR), ("images", IMAGES_DIR)):
        shapes = write_shape_manifest(os.path.join(videos, source), os.path.join(videos, target))
        print(f"[demo] labelled by shape: {shapes}", flush=True)
    for stage in stages[len(SYNTHETIC):]:
        run_stage(c.out_dir, stage)
    for seed in range(c.seeds):
        for stage in seed_stages(c, seed):
            run_stage(c.out_dir, stage)
    for stage in representation_stages(c):
        run_stage(c.out_dir, stage)
    return distinit_report.write_report(c.out_dir, seeds=network_seeds(c),
                                        data_seed=c.data_seed)


def main(argv):
    del argv
    run(config_flags.from_flags(DemoConfig))


if __name__ == "__main__":
    # Flags only when run as a tool: tests import this module next to `d3d_tf.demo`, whose
    # flags (out_dir, seeds, ...) have the same names.
    config_flags.define_flags(DemoConfig)
    cli.run(main)
