"""The demo's flagfiles: the shared settings live once (configs/demo/common/), and the runs
the demo compares differ only in what the comparison is about."""
import dataclasses
import os

from absl import flags

from d3d_tf.distill.config import DistillConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join("configs", "demo")
# What makes D3D the baseline plus distillation: the fields of --task=distill's section, the
# task, and the run folder each writes.
DISTILLATION = {f.name for f in dataclasses.fields(DistillConfig)} | {"task", "model_dir"}


def settings(path: str) -> dict[str, str]:
    """flag -> value of a flagfile with its `--flagfile=` includes expanded as the tools read
    them (paths relative to the repository root; a later flag overrides an earlier one)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        argv = flags.FlagValues().read_flags_from_files([f"--flagfile={path}"], force_gnu=True)
    finally:
        os.chdir(cwd)
    out = {}
    for arg in argv:
        name, _, value = arg.lstrip("-").partition("=")
        out[name] = value
    return out


def _differences(a: dict, b: dict) -> set[str]:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def test_baseline_and_d3d_differ_only_in_the_distillation_term():
    baseline = settings(os.path.join(DEMO, "baseline.flags"))
    d3d = settings(os.path.join(DEMO, "d3d.flags"))
    assert _differences(baseline, d3d) <= DISTILLATION, _differences(baseline, d3d)
    assert baseline["task"] == "classify" and d3d["task"] == "distill"
    assert "distill_weights" in d3d and "distill_weights" not in baseline
    # The shared part is the whole training: network, clip, data, optimizer, schedule, loop.
    for name in ("model", "depth_multiplier", "num_frames", "crop_size", "train_data",
                 "optimizer", "learning_rate", "train_steps", "batch_size", "seed"):
        assert baseline[name] == d3d[name] != "", name


def test_every_demo_training_shares_the_network_clip_and_data():
    runs = ("teacher", "baseline", "d3d", "flow_loss", "cnn_flow")
    common = settings(os.path.join(DEMO, "common", "training.flags"))
    for run in runs:
        s = settings(os.path.join(DEMO, f"{run}.flags"))
        for name in ("model", "depth_multiplier", "num_frames", "crop_size", "batch_norm_decay",
                     "random_flip", "train_data", "eval_data", "labels", "batch_size", "seed"):
            assert s[name] == common[name], (run, name)
    assert settings(os.path.join(DEMO, "teacher.flags"))["modality"] == "flow"


def test_no_demo_training_flagfile_repeats_a_shared_line():
    """Each run's flagfile includes configs/demo/common/ and sets again only what it changes."""
    for run in ("teacher", "baseline", "d3d", "flow_loss", "cnn_flow"):
        path = os.path.join(REPO, DEMO, f"{run}.flags")
        with open(path) as f:
            own = [ln.strip()[2:].partition("=") for ln in f if ln.startswith("--")]
        includes = [v for name, _, v in own if name == "flagfile"]
        assert includes and includes[0].startswith("configs/demo/common/"), run
        shared = settings(includes[0])
        repeated = [name for name, _, v in own if name != "flagfile" and shared.get(name) == v]
        assert not repeated, (run, repeated)


DISTINIT = os.path.join(DEMO, "distinit")


def test_distinit_trainings_share_width_crop_and_optimizer_and_repeat_none_of_it():
    """The image teacher, the DistInit pre-training and the fine-tunings of every start share
    configs/demo/distinit/common/training.flags (same width, so the inflated teacher fits the
    students; one optimizer for all), and the students' clip is the inflation's."""
    runs = {run: settings(os.path.join(DISTINIT, f"{run}.flags"))
            for run in ("teacher", "distinit", "finetune")}
    common = settings(os.path.join(DISTINIT, "common", "training.flags"))
    for run, s in runs.items():
        assert {k: s[k] for k in common} == common, run
        with open(os.path.join(REPO, DISTINIT, f"{run}.flags")) as f:
            own = [ln.strip()[2:].partition("=") for ln in f if ln.startswith("--")]
        assert own[0][::2] == ("flagfile", os.path.join(DISTINIT, "common", "training.flags"))
        repeated = [name for name, _, v in own[1:] if common.get(name) == v]
        assert not repeated, (run, repeated)
    inflate = settings(os.path.join(DISTINIT, "inflate.flags"))
    assert runs["distinit"]["num_frames"] == runs["finetune"]["num_frames"] \
        == inflate["num_frames"]
    assert runs["finetune"]["crop_size"] == inflate["crop_size"]
