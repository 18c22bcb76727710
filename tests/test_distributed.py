"""Distribution strategies and resume, each in its own process (slow-ish: ~1-2 min total)."""
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


@pytest.mark.slow
def test_multi_worker_two_processes_end_identical(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, shards=2)
    model_dir = str(tmp_path / "run")
    cfg = {"model_dir": model_dir, "train_data": data, "depth_multiplier": 0.25, "num_frames": 4,
               "crop_size": 32, "batch_size": 4, "train_steps": 2, "checkpoint_every": 2,
               "log_every": 1,
               "learning_rate": 0.05, "strategy": "multi_worker", "seed": 1,
               "sync_batch_norm": True}
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(SCRIPTS, "multi_worker_train.py"), json.dumps(cfg)],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    results = [_result(o) for o in outs]
    assert all(r["step"] == 2 for r in results)
    assert "2 replica(s), global batch 4 = 2 per replica" in outs[0]
    # Chief writes model_dir/ckpt; worker 1 its private copy. Every variable must match
    # (BN moving statistics too: with sync BN every worker sees the global batch statistics;
    # without it, each worker's moving averages follow its own examples and only the
    # trainable weights agree).
    chief = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt"))
    other = tf.train.load_checkpoint(os.path.join(model_dir, "tmp_workers", "worker_1", "ckpt"))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith("network/")]
    assert len(names) > 100
    for n in names:
        np.testing.assert_array_equal(chief.get_tensor(n), other.get_tensor(n), err_msg=n)
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
    latest = tf.train.latest_checkpoint(ckpt_dir)
    assert latest, "no checkpoint was written before the kill"
    saved = int(latest.rsplit("-", 1)[1])
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
