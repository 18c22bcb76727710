"""The main job, end to end on the built-in motion dataset: `make demo`.

    python -m d3d_tf.demo --out_dir=demo_out [--seeds=3]

Stages (each a `python -m d3d_tf.<tool>` command, printed before it runs):
synthetic videos -> TFRecords with TV-L1 flow -> flow teacher, RGB S3D-G baseline, D3D student
-> evaluation of all three and the D3D+S3D-G ensemble -> flow probes at 3A (seed 0's teacher,
every seed's baseline and D3D) -> with `--ava`, AVA detectors initialised from every seed's
baseline and D3D (`d3d_tf.demo.ava`, in `<out_dir>/ava/`) ->
SavedModel and TFLite export of D3D -> `predict` on a held-out video -> `demo_out/report.md`.

With `--data_seeds=a,b,c` (or `--fresh_data_seeds=N`, seeds drawn at random) the whole demo
runs once per draw of the data, in `<out_dir>/data_<seed>/`, and `<out_dir>/protocol.md` judges
its claims over all of them by the evidence protocol (docs/protocol.md); `make protocol`.

A finished stage leaves `demo_out/stages/<stage>.done` holding its command; rerunning skips it
(delete the marker, or the whole `demo_out/`, to redo it). An interrupted stage reruns from
its own resume point (training resumes from its last checkpoint, `prepare` skips finished
shards).
"""
from __future__ import annotations

import dataclasses
import os
import time

from d3d_tf.core.config_flags import field, section
from d3d_tf.demo import probes, protocol, report
from d3d_tf.demo.stages import Stage, run_stage
from d3d_tf.demo.stages import python_module as _python_module


@dataclasses.dataclass
class DemoConfig:
    """Flags of `python -m d3d_tf.demo` (defined by d3d_tf/demo/__main__.py)."""
    out_dir: str = field("demo_out", "Where every artifact of the demo goes.")
    seeds: int = field(1, "Train the three networks this many times (seeds 0..N-1) and "
                       "report mean ± std.", min=1)
    configs: str = field("configs/demo", "Folder of the demo flagfiles (synthetic.flags, "
                         "teacher.flags, baseline.flags, d3d.flags).")
    workers: int = field(0, "Worker processes for flow extraction (0 = all cores).", min=0)
    tflite_int8: bool = field(True, "Also export a full-integer int8 TFLite model.")
    draws: protocol.DataSeedsConfig = section(protocol.DataSeedsConfig, "Data seeds")
    export: bool = field(True, "Export seed 0's D3D (SavedModel, TFLite) and run predict.")
    shared_teacher: bool = field(False, "Train the flow teacher with training seed 0 only and "
                                 "distill every training seed's D3D student from it (one "
                                 "teacher per data seed, as the acceptance runs of "
                                 "docs/protocol.md did); false: each training seed trains "
                                 "its own teacher.")
    probe_teacher: bool = field(True, "Also probe seed 0's flow teacher at 3A: a reference "
                                "row of the report's probe table (the protocol's claims "
                                "compare the RGB networks only).")
    ava: bool = field(False, "Also run the AVA comparison (the paper's Table 5) per data "
                      "seed: detectors initialised from the D3D and from the S3D-G run of "
                      "every training seed, on multi-actor data drawn with the data seed "
                      "(d3d_tf.demo.ava; docs/protocol.md).")
    ava_seeds: int | None = field(None, "With --ava: training seeds 0..N-1 get detectors, at "
                                  "most --seeds; unset: --seeds.", min=1)


RUNS = (  # name, flagfile, method label, modality, is run at inference on RGB only
    ("teacher", "teacher.flags", "Temporal stream (flow teacher)", "flow"),
    ("baseline", "baseline.flags", "S3D-G (RGB baseline)", "rgb"),
    ("d3d", "d3d.flags", "D3D (distilled from flow)", "rgb"),
)


def run(c: DemoConfig) -> str:
    """The whole demo (once per data seed of `c.draws`); returns
    the path of its report (`report.md`, or `protocol.md` over several data seeds)."""
    _check_ava_configs(c)
    out = c.out_dir
    os.makedirs(out, exist_ok=True)
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) hides the progress lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.time()
    data_seeds = resolve_data_seeds(c)
    if not data_seeds:
        path = run_data_seed(c, out, None)
    else:
        dirs = {d: os.path.join(out, f"data_{d}") for d in data_seeds}
        for i, (d, folder) in enumerate(dirs.items()):
            print(f"\n[demo] data seed {d} ({i + 1} of {len(dirs)}) in {folder}", flush=True)
            run_data_seed(c, folder, d)
        path = report.write_protocol_report(out, dirs, seeds=c.seeds, ava_seeds=ava_seeds(c))
    print(f"\n[demo] finished in {time.time() - start:.0f} s (stages reused from earlier runs "
          f"are not counted); report: {path}")
    return path


def resolve_data_seeds(c: DemoConfig) -> list[int]:
    """--data_seeds, or the fresh seeds drawn by an earlier run of this out_dir, or new ones
    (ValueError naming the flag for a bad combination)."""
    return protocol.resolve_data_seeds(c.out_dir, c.draws.data_seeds,
                                       c.draws.fresh_data_seeds)


def run_data_seed(c: DemoConfig, out: str, data_seed: int | None) -> str:
    """Every stage of the demo on one draw of the data (`data_seed`: the generator's --seed;
    None = synthetic.flags' own) in `out`; returns the path of its report."""
    os.makedirs(out, exist_ok=True)
    videos = os.path.join(out, "videos")
    records = os.path.join(out, "records")
    synthetic_flags = os.path.join(c.configs, "synthetic.flags")
    if data_seed is None:
        data_seed = _flagfile_seed(synthetic_flags)
    run_stage(out, Stage("synthetic", _python_module(
        "synthetic", f"--flagfile={synthetic_flags}", f"--out_dir={videos}",
        f"--workers={c.workers}", f"--seed={data_seed}")))
    for split, shards in (("train", 4), ("test", 2)):
        run_stage(out, Stage(f"prepare_{split}", _python_module(
            "prepare", "--format=manifest", f"--annotations={videos}/manifest.csv",
            f"--split={split}", f"--out_dir={records}", "--flow=tvl1",
            f"--workers={c.workers}", f"--num_shards={shards}")))
    for seed in range(c.seeds):
        for stage in seed_stages(out, c.configs, records, seed,
                                 shared_teacher=c.shared_teacher):
            run_stage(out, stage)
    # Motion probes at 3A (PWC, frozen): seed 0's teacher, every seed's baseline and D3D.
    for name, args in probes.stage_args(out, c.configs, records, c.seeds,
                                        teacher=c.probe_teacher):
        run_stage(out, Stage(name, _python_module("probe", *args)))
    if c.ava:
        run_ava(c, out, data_seed)
    if not c.export:
        return report.write_report(out, seeds=c.seeds, data_seed=data_seed,
                                   ava_seeds=ava_seeds(c))
    # Seed 0's student is the one exported.
    d3d_model = os.path.join(out, "runs", "d3d" + protocol.run_suffix(0), "model")
    export_dir = os.path.join(out, "export")
    run_stage(out, Stage("export_saved_model", _python_module(
        "export", f"--model_dir={d3d_model}", "--format=saved_model", f"--out_dir={export_dir}",
        "--model_name=d3d", "--overwrite")))
    for q in ["float32"] + (["int8"] if c.tflite_int8 else []):
        run_stage(out, Stage(f"export_tflite_{q}", _python_module(
            "export", f"--model_dir={d3d_model}", "--format=tflite", f"--out_dir={export_dir}",
            "--model_name=d3d", f"--quantize={q}",
            f"--calibration_data={os.path.join(records, 'train-*.tfrecord')}",
            f"--accuracy_data={os.path.join(records, 'test-*.tfrecord')}")))
    held_out = _held_out_video(videos)
    for tag, model in (("saved_model", os.path.join(export_dir, "d3d")),
                       ("tflite", os.path.join(export_dir, "d3d_float32.tflite"))):
        run_stage(out, Stage(f"predict_{tag}", _python_module(
            "predict", held_out, f"--export_path={model}", "--json", "--num_clips=2"),
            stdout=os.path.join(out, f"predict_{tag}.json")))
    return report.write_report(out, seeds=c.seeds, held_out=held_out,
                               data_seed=data_seed, ava_seeds=ava_seeds(c))


def ava_seeds(c: DemoConfig) -> int:
    """How many training seeds (0..N-1) the AVA comparison runs: `c.ava_seeds`, or `c.seeds`
    when unset (ValueError when it exceeds `c.seeds`)."""
    return protocol.first_seeds("ava_seeds", c.ava_seeds, c.seeds)


def _check_ava_configs(c: DemoConfig) -> None:
    """With --ava, the AVA flagfiles must be in --configs and --ava_seeds within --seeds
    (checked before any stage runs)."""
    from d3d_tf.demo import ava

    ava_seeds(c)
    missing = ava.missing_configs(c.configs) if c.ava else []
    if missing:
        raise ValueError(f"--ava needs {', '.join(missing)} (--configs={c.configs}); "
                             "configs/demo has them")


def run_ava(c: DemoConfig, out: str, data_seed: int) -> None:
    """The AVA comparison's stages (d3d_tf.demo.ava) on this data seed, after its
    classification runs: multi-actor data drawn with the data seed, then per training seed
    the S3D-G- and the D3D-initialised detector and their evaluation."""
    from d3d_tf.demo import ava

    for stage in ava.stages(out, c.configs, ava_seeds(c), data_seed, c.workers):
        run_stage(out, stage)


def seed_stages(out: str, configs: str, records: str, seed: int, *,
                shared_teacher: bool = False) -> list[Stage]:
    """The teacher, baseline and D3D trainings of one seed, then their evaluation. With
    `shared_teacher`, seeds after 0 train no teacher: their D3D student distills from seed 0's
    and their evaluation includes it."""
    suffix = protocol.run_suffix(seed)
    test_data = os.path.join(records, "test-*.tfrecord")
    stages, model_dirs = [], {}
    for name, flagfile, _, _ in RUNS:
        if name == "teacher" and shared_teacher and seed > 0:
            model_dirs[name] = os.path.join(out, "runs", name + protocol.run_suffix(0), "model")
            continue
        run_dir = os.path.join(out, "runs", name + suffix)
        extra = [f"--model_dir={run_dir}", f"--seed={seed}",
                 f"--train_data={os.path.join(records, 'train-*.tfrecord')}",
                 f"--eval_data={test_data}", f"--labels={os.path.join(records, 'labels.txt')}"]
        if name == "d3d":
            extra.append(f"--teacher={model_dirs['teacher']}")
        stages.append(Stage(f"train_{name}{suffix}", _python_module(
            "train", f"--flagfile={os.path.join(configs, flagfile)}", *extra)))
        model_dirs[name] = os.path.join(run_dir, "model")
    stages.append(Stage(f"evaluate{suffix}", _python_module(
        "evaluate", f"--data={test_data}", f"--out_dir={os.path.join(out, 'eval' + suffix)}",
        *[f"--model_dir={model_dirs[n]}" for n, _, _, _ in RUNS],
        *[f"--name={n}" for n, _, _, _ in RUNS],
        "--ensemble_of=d3d+baseline", "--compare=baseline,d3d", "--num_clips=2")))
    return stages


def _flagfile_seed(path: str) -> int:
    """The `--seed=` of a synthetic flagfile (the generator's default, 0, when it sets none)."""
    seed = 0
    with open(path) as f:
        for line in f:
            if line.strip().startswith("--seed="):
                seed = int(line.strip().split("=", 1)[1])
    return seed


def _held_out_video(videos_dir: str) -> str:
    import csv

    with open(os.path.join(videos_dir, "manifest.csv")) as f:
        for row in csv.DictReader(f):
            if row["split"] == "test":
                return os.path.join(videos_dir, row["path"])
    raise SystemExit(f"{videos_dir}/manifest.csv has no test video")

