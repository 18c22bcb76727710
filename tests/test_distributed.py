"""Distribution strategies and resume, each in its own process (slow: a few minutes in all);
the one-device runs that the two-worker runs are compared with run in the test's process."""
import glob
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods, models
from d3d_tf.ava import synthetic_ava
from d3d_tf.models import saving
from d3d_tf.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "scripts")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _result(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_two_replicas_equals_one_device():
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "mirrored_vs_single.py")],
                          env=_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    r = _result(proc.stdout + proc.stderr)
    assert r["replicas"] == 2
    assert r["max_change"] > 1e-3           # the steps did change the weights ...
    assert r["max_diff"] < 1e-5             # ... identically on 2 replicas and on 1 device
    for a, b in zip(r["logs1"], r["logs2"]):  # and the logged losses are the true values
        np.testing.assert_allclose(a["ce"], b["ce"], rtol=1e-5)
        np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
    assert "not divisible by the 2 replicas" in r["refused"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The equivalence runs: every random choice of the input pipeline is switched off (clips as
# long and as large as stored: no temporal or spatial crop, no flip, no box jitter, no
# dropout; shuffle_buffer=1), so each pipeline reads its records in file order. Then the two
# workers' per-replica batches of step k (records 4k, 4k+2 and 4k+1, 4k+3 when one shard is
# split by record; the two shards' k-th pairs when each worker reads one shard) together hold
# exactly the records of the one-device run's k-th global batch. Sync BN takes the BN
# statistics over that global batch and --clip_norm clips the all-reduced global gradient, so
# 2 workers x 2 clips compute the same step as 1 device x 4 clips up to float32 rounding.
EQUIVALENCE = {"depth_multiplier": 0.25, "num_frames": 4, "crop_size": 32, "batch_size": 4,
               "train_steps": 2, "checkpoint_every": 1, "log_every": 1, "optimizer": "sgd",
               "learning_rate": 0.1, "clip_norm": 1.0, "seed": 1, "sync_batch_norm": True,
               "dropout_keep_prob": 1.0, "random_flip": False, "min_scale": 1.0,
               "shuffle_buffer": 1, "precision": "float32"}
# How far a variable of the 2-worker run may be from the one-device run's, as a fraction of the
# variable's largest magnitude. Only the order of float32 sums differs (two half-batch sums
# all-reduced instead of one sum, for the gradients and the BN moments); through the backward
# pass of a BN network at its tiny initialization this rounding grows to at most ~1e-4 after
# step 1 and ~1e-3 after step 2 (measured: classify, distill, ava). A global batch that holds
# other clips moves variables by 0.8-4x their magnitude (measured: ava with every keyframe read
# by both workers), and one step moves the median variable by ~3-6%.
STEP_RTOL = 1e-2
TINY_AVA = {"num_videos": 5, "num_actors": 2, "num_classes": 3, "duration_s": 3, "fps": 4.0,
            "size": 32, "val_fraction": 0.2, "excluded_fraction": 0.0, "seed": 3}


def _equivalence_config(root, task: str) -> dict:
    """TrainConfig fields of a tiny `task` run on data written under `root`: classify (two
    shards, split by file), distill (one shard, split by record; a frozen flow teacher's logits
    and Mixed_3b features) or ava (one shard of keyframe records, split by record)."""
    cfg = dict(EQUIVALENCE, task=task)
    if task == "ava":
        paths = train_fixtures.write_ava_records(root, synthetic_ava.MultiActorConfig(
            **TINY_AVA), clip_frames=4, splits=("train",))
        return dict(cfg, train_data=paths["train_records"], depth_multiplier=0.125,
                    ava_roi_size=2, ava_max_boxes=4, ava_box_jitter=0.0)
    # Clips of exactly num_frames stored frames of crop_size pixels: nothing left to sample.
    data = train_fixtures.write_dataset(os.path.join(root, "data"), videos=8, frames=4,
                                        size=32, shards=2 if task == "classify" else 1)
    if task == "distill":
        teacher = models.build_classifier("s3dg", num_classes=len(train_fixtures.CLASSES),
                                          input_shape=(4, 32, 32, 2), in_channels=2,
                                          depth_multiplier=0.25)
        teacher_dir = os.path.join(root, "teacher")
        saving.save_model_dir(teacher_dir, teacher, saving.spec_for(
            teacher, name="s3dg", labels=list(train_fixtures.CLASSES), modality="flow"))
        # lambda by the rule, set from the global batch's losses whatever the replicas; the
        # multipliers keep each lambda near 1 (the rule alone gives ~30 here, a step so large
        # that float rounding between one and two workers grows past the tolerance).
        cfg.update(teacher=teacher_dir, distill_endpoints=["logits", "3B"],
                   distill_weights=[0.03, 0.03], distill_lambda_rule=True)
    return dict(cfg, train_data=data)


def _step_logs(summary: dict) -> list[dict]:
    """The logged values of steps 1 and 2 of a train summary (log_every=1)."""
    if "loss_history" in summary:  # --task=ava
        return [{k: v for k, v in h.items() if k != "step"} for h in summary["loss_history"]]
    return [summary["first_train_logs"], summary["final_train_logs"]]


def _checkpoint_values(model_dir: str, step: int) -> dict:
    """Every variable of checkpoint `step` of a run (the network's trainable variables are
    stored under optimizer/_trainable_variables/, its BN moving statistics under network/)."""
    ckpt = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt", f"ckpt-{step}"))
    return {n: ckpt.get_tensor(n) for n in ckpt.get_variable_to_shape_map()
            if n.endswith("VARIABLE_VALUE") and "save_counter" not in n}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "distill", "ava"])
def test_multi_worker_two_processes_equal_one_device(tmp_path, task):
    cfg = _equivalence_config(str(tmp_path), task)
    model_dir = str(tmp_path / "run")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "multi_worker_train.py"),
             json.dumps(dict(cfg, model_dir=model_dir, strategy="multi_worker"))],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    # Meanwhile, the same run on one device (this process).
    single_dir = str(tmp_path / "single")
    single = trainer.train(methods.TrainConfig(**dict(cfg, model_dir=single_dir)))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    results = [_result(o) for o in outs]
    assert all(r["step"] == 2 for r in results) and single["step"] == 2
    # The logged values are the true ones of the global batch: losses and the global
    # gradient norm before clipping (which clipping would otherwise hide from the weights).
    for got, want in zip(_step_logs(results[0]), _step_logs(single), strict=True):
        assert got.keys() == want.keys() and "grad_norm" in got
        if task == "distill":
            assert sum(k.startswith("lambda_") for k in want) == 2
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-7, err_msg=k)
    for step in (1, 2):
        # Chief writes model_dir/ckpt; worker 1 its private copy: bit-identical (BN moving
        # statistics too: with sync BN every worker sees the global batch statistics).
        chief = _checkpoint_values(model_dir, step)
        other = _checkpoint_values(os.path.join(model_dir, "tmp_workers", "worker_1"), step)
        one = _checkpoint_values(single_dir, step)
        assert len(chief) > 400 and chief.keys() == other.keys() == one.keys()
        for n in chief:
            np.testing.assert_array_equal(chief[n], other[n], err_msg=n)
            np.testing.assert_allclose(chief[n], one[n], rtol=0, err_msg=n,
                                       atol=STEP_RTOL * float(np.max(np.abs(one[n]))))
    # ... while a step moves the typical variable by more than that tolerance.
    before, after = _checkpoint_values(single_dir, 1), _checkpoint_values(single_dir, 2)
    moved = [float(np.max(np.abs(after[n] - before[n]) / np.max(np.abs(after[n]))))
             for n in after if "_trainable_variables" in n and np.any(after[n])]
    assert np.median(moved) > STEP_RTOL, np.median(moved)
    if task == "ava":
        assert os.path.isfile(os.path.join(model_dir, "model", "detector.json"))
    else:
        assert os.path.isfile(os.path.join(model_dir, "model", "model.json"))


@pytest.mark.slow
def test_sigkill_then_resume_at_saved_step(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4)
    model_dir = str(tmp_path / "run")
    args = [sys.executable, "-m", "d3d_tf.train", f"--model_dir={model_dir}",
            f"--train_data={data}", "--depth_multiplier=0.25", "--num_frames=4",
            "--crop_size=32", "--batch_size=2", "--train_steps=40", "--checkpoint_every=2",
            "--log_every=1", "--learning_rate=0.01"]
    proc = subprocess.Popen(args, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = os.path.join(model_dir, "ckpt")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if tf.train.latest_checkpoint(ckpt_dir):
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The rerun resumes from the newest intact checkpoint on disk, which the kill can leave
    # newer than the one the `checkpoint` index names (killed between the two writes).
    from d3d_tf.training import checkpoints

    intact = [p for p in checkpoints.list_checkpoints(ckpt_dir) if checkpoints.damage(p) is None]
    assert intact, "no checkpoint was written before the kill"
    saved = checkpoints.checkpoint_number(intact[0])
    assert saved < 40, "the run finished before it could be killed"
    rerun = subprocess.run(args, env=_env(), cwd=ROOT, capture_output=True, text=True,
                           timeout=600, check=False)
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    assert f"at step {saved}" in log and "resumed from" in log
    assert f"step {saved + 1}/40" in log
    assert "step 1/40" not in log
    with open(os.path.join(model_dir, "model", "model.json")) as f:
        spec = json.load(f)
    assert "step=40" in spec["source"]
    with open(os.path.join(model_dir, "train_summary.json")) as f:
        summary = json.load(f)
    assert summary["step"] == 40 and summary["start_step"] == saved
    assert summary["seconds_per_step"] > 0


def test_every_flagfile_parses():
    files = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.flags"), recursive=True))
    # The demo's data flagfiles are d3d_tf.synthetic's and d3d_tf.prepare's
    # (tests/test_synthetic.py and tests/test_ava_data.py parse them); common/ holds the
    # shared protocol pieces that the run flagfiles include.
    common = [f for f in files if os.sep + "common" + os.sep in f]
    files = [f for f in files if f not in common and os.path.basename(f) not in (
        "synthetic.flags", "ava_synthetic.flags", "ava_prepare.flags")]
    included = "".join(pathlib.Path(f).read_text() for f in files)
    for f in common:
        assert os.path.relpath(f, ROOT) in included, f"{f} is included by no flagfile"
    # probe*.flags are d3d_tf.probe's (tests/test_flow_tasks.py parses them). The DistInit
    # demo's flagfiles leave --model_dir to the demo: tests/test_demo_distinit.py runs each.
    distinit_demo = os.path.join(ROOT, "configs", "demo", "distinit", "")
    files = [f for f in files if not os.path.basename(f).startswith("probe")
             and not f.startswith(distinit_demo)]
    assert len(files) >= 10
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "parse_flagfiles.py"), *files],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    parsed = _result(proc.stdout + proc.stderr)
    assert [p[0] for p in parsed] == files
    tasks = {os.path.basename(p[0]): p[1] for p in parsed}
    assert tasks["d3d.flags"] == "distill" and tasks["teacher.flags"] == "classify"
    assert tasks["finetune_ucf101_split1.flags"] == "finetune"
    # Splits 2 and 3 include split 1's flagfile and override its data and run directory.
    dirs = {os.path.basename(p[0]): p[2] for p in parsed}
    for name in ("ucf101", "hmdb51"):
        for split in (2, 3):
            run = f"finetune_{name}_split{split}"
            assert tasks[f"{run}.flags"] == "finetune" and dirs[f"{run}.flags"] == f"runs/{run}"
    # No two paper flagfiles write the same run, and every fine-tuning starts from the run of
    # another flagfile or from a converted model directory (models/..., docs/weights.md).
    paper = [p for p in parsed if os.sep + "paper" + os.sep in p[0]]
    assert len({p[2] for p in paper}) == len(paper)
    runs = {p[2] + "/model" for p in parsed}
    for path, task, _, init_from, _ in paper:
        if task in ("finetune", "ava"):
            assert init_from in runs or init_from.startswith("models/"), (path, init_from)
    # DistInit's Table 5: the flow students train and fine-tune on flow.
    modality = {os.path.basename(p[0]): p[4] for p in parsed}
    for name in ("distinit_kinetics_r2plus1d_18_flow", "finetune_hmdb51_distinit_r2plus1d_18_flow",
                 "scratch_hmdb51_r3d_18_flow", "finetune_hmdb51_inflated_r3d_18_flow"):
        assert modality[f"{name}.flags"] == "flow", name
