"""Training never loses a run silently: damaged checkpoints fall back to the newest intact
one (loudly), another run's checkpoints are refused in one line, two processes on one
model_dir are refused."""
import glob
import os
import sys

import keras
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods
from d3d_tf.training import checkpoints, trainer


def _state(units=4, optimizer="sgd"):
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])
    opt = (keras.optimizers.SGD(0.1, momentum=0.9) if optimizer == "sgd"
           else keras.optimizers.AdamW(0.1))
    opt.build(net.trainable_variables)
    return net, opt, tf.train.Checkpoint(network=net, optimizer=opt)


def _run(ckpt_dir, steps=(1, 2, 3)):
    _, opt, ckpt = _state()
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=3)
    for s in steps:
        opt.iterations.assign(s)
        manager.save(checkpoint_number=s)
    return manager


def _resume(ckpt_dir, **kw):
    _, opt, ckpt = _state(**kw)
    path = checkpoints.restore_newest_intact(ckpt, ckpt_dir)
    return path, int(opt.iterations.numpy()), ckpt


def _damage(prefix, how):
    data = glob.glob(prefix + ".data-*")[0]
    if how == "missing":
        os.remove(prefix + ".index")
        os.remove(data)
    elif how == "truncated":
        with open(data, "rb") as f:
            b = f.read()
        with open(data, "wb") as f:
            f.write(b[:len(b) // 2])
    elif how == "garbled":
        with open(data, "r+b") as f:
            f.seek(8)
            f.write(b"\x5a" * 16)


def test_relative_model_dir_and_an_undecodable_checkpoint_file(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    d = os.path.join("w", "x", "ckpt")  # relative, as --model_dir=w/x gives
    _run(d)
    want = [os.path.join(d, f"ckpt-{n}") for n in (3, 2, 1)]
    assert checkpoints.list_checkpoints(d) == want  # no phantom w/x/ckpt/w/x/ckpt/ckpt-3
    assert _resume(d)[:2] == (want[0], 3) and "DAMAGED" not in caplog.text
    _damage(want[0], "missing")
    assert _resume(d)[:2] == (want[1], 2)  # rewrites the `checkpoint` file
    assert "RESUMED FROM AN OLDER CHECKPOINT w/x/ckpt/ckpt-2" in caplog.text
    assert checkpoints.list_checkpoints(d) == want[1:]
    assert tf.train.get_checkpoint_state(d).all_model_checkpoint_paths == want[:0:-1]
    # Bytes that are not UTF-8 in the `checkpoint` file: the checkpoints on disk are used, the
    # file is named, and the manager of the resumed run can read the rewritten file.
    caplog.clear()
    with open(os.path.join(d, "checkpoint"), "ab") as f:
        f.write(b"\xff\xfe\n")
    path, step, ckpt = _resume(d)
    assert (path, step) == (want[1], 2)
    assert "w/x/ckpt/checkpoint cannot be read (UnicodeDecodeError" in caplog.text
    assert "DAMAGED" not in caplog.text
    assert tf.train.CheckpointManager(ckpt, d, max_to_keep=3).latest_checkpoint == want[1]


@pytest.mark.parametrize("how", ["missing", "truncated", "garbled"])
def test_damaged_latest_checkpoint_falls_back_and_rotation_keeps_intact_ones(
        tmp_path, how, caplog):
    d = str(tmp_path / "ckpt")
    _run(d)
    _damage(os.path.join(d, "ckpt-3"), how)
    # tf.train.latest_checkpoint gives up on missing files: the run would restart at step 0.
    path, step, ckpt = _resume(d)
    assert path == os.path.join(d, "ckpt-2") and step == 2
    assert "CHECKPOINT DAMAGED" in caplog.text and "ckpt-3" in caplog.text
    # Training on from step 2 with the usual manager: saving steps 3, 4, 5 never deletes
    # ckpt-2 before three intact newer checkpoints exist.
    manager = tf.train.CheckpointManager(ckpt, d, max_to_keep=3)
    opt = ckpt.optimizer
    for s in (3, 4):
        opt.iterations.assign(s)
        manager.save(checkpoint_number=s)
        assert os.path.exists(os.path.join(d, "ckpt-2.index"))
        assert os.path.exists(os.path.join(d, "ckpt-1.index")) or s == 4
    assert _resume(d)[1] == 4


def test_no_intact_checkpoint_is_an_error_not_a_restart(tmp_path):
    d = str(tmp_path / "ckpt")
    _run(d, steps=(1, 2))
    for s in (1, 2):
        _damage(os.path.join(d, f"ckpt-{s}"), "truncated")
    with pytest.raises(checkpoints.CheckpointError, match=r"none of its 2 checkpoints can be "
                       r"read \(ckpt-2: unreadable.*ckpt-1: unreadable"):
        _resume(d)
    assert _resume(str(tmp_path / "new"))[0] is None  # an empty folder is a new run


@pytest.mark.parametrize("other", [{"units": 5}, {"optimizer": "adamw"}])
def test_checkpoint_of_another_configuration_is_one_line(tmp_path, other):
    d = str(tmp_path / "ckpt")
    _run(d, steps=(1,))
    with pytest.raises(ValueError, match="holds a run of another configuration: .*ckpt-1") as e:
        _resume(d, **other)
    assert "\n" not in str(e.value)


def test_leftover_temp_folders_are_removed(tmp_path):
    d = tmp_path / "ckpt"
    os.makedirs(d / "ckpt-7_temp")
    (d / "ckpt-7_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    os.makedirs(d / "keep_me")
    assert checkpoints.remove_temp_dirs(str(d)) == [str(d / "ckpt-7_temp")]
    assert os.listdir(d) == ["keep_me"]


def _config(tmp_path, **kw):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=4, size=16,
                                        with_flow=False)
    base = {"model_dir": str(tmp_path / "run"), "train_data": data, "depth_multiplier": 0.1,
            "num_frames": 2, "crop_size": 16, "batch_size": 2, "train_steps": 2,
            "checkpoint_every": 1, "log_every": 1, "shuffle_buffer": 2}
    return methods.TrainConfig(**{**base, **kw})


def test_trainer_resumes_from_intact_checkpoint_and_refuses_other_runs(tmp_path):
    cfg = _config(tmp_path)
    trainer.train(cfg)
    ckpt_dir = os.path.join(cfg.model_dir, "ckpt")
    os.makedirs(os.path.join(ckpt_dir, "ckpt-3_temp"))  # an interrupted save
    for f in glob.glob(os.path.join(ckpt_dir, "ckpt-2.*")):
        os.remove(f)
    # Resumed at step 1 (not 0): with train_steps=1 nothing is left to train (the rotation
    # after a fallback is tested above without a network).
    cfg.train_steps = 1
    summary = trainer.train(cfg)
    assert summary["start_step"] == 1 and summary["step"] == 1
    assert not os.path.exists(os.path.join(ckpt_dir, "ckpt-3_temp"))
    assert [os.path.basename(p) for p in checkpoints.list_checkpoints(ckpt_dir)] == ["ckpt-1"]
    assert not os.path.exists(os.path.join(cfg.model_dir, "train.lock"))  # released
    cfg.optimizer = "adamw"
    with pytest.raises(ValueError, match="holds a run of another configuration"):
        trainer.train(cfg)
    assert not os.path.exists(os.path.join(cfg.model_dir, "train.lock"))


def test_second_process_on_a_model_dir_is_refused_naming_the_first(tmp_path):
    import json
    import socket
    import subprocess

    from d3d_tf.core import run_lock

    folder = str(tmp_path / "run")
    mine = rf"in use by another training: pid {os.getpid()} on host {socket.gethostname()}"
    with run_lock.hold(folder) as path, pytest.raises(run_lock.RunLockedError, match=mine):
        run_lock.acquire(folder)
    assert not os.path.exists(path)
    # A lock left by a process that died on this host is taken over.
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(path, "w") as f:
        json.dump({"pid": dead.pid, "host": socket.gethostname()}, f)
    assert run_lock.acquire(folder) == path
    with open(path) as f:
        assert json.load(f)["pid"] == os.getpid()
    run_lock.release(path)
    # One on another host cannot be checked: refused.
    with open(path, "w") as f:
        json.dump({"pid": 1, "host": "elsewhere", "started": "yesterday"}, f)
    with pytest.raises(run_lock.RunLockedError, match="pid 1 on host elsewhere, started "
                       "yesterday"):
        run_lock.acquire(folder)
    # Workers of one multi-worker job lock separately.
    assert run_lock.lock_name("multi_worker", '{"task": {"type": "worker", "index": 1}}') == \
        "train.worker-1.lock"
    assert run_lock.lock_name("mirrored") == "train.lock"


def test_trainer_refuses_a_model_dir_in_use(tmp_path):
    import subprocess

    from d3d_tf.core import run_lock

    cfg = _config(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = run_lock.acquire(cfg.model_dir)
        with open(lock) as f:  # the lock of the other (live) process
            text = f.read().replace(str(os.getpid()), str(other.pid)).replace(
                f'"proc_start": {run_lock._proc_start(os.getpid())}',
                f'"proc_start": {run_lock._proc_start(other.pid)}')
        with open(lock, "w") as f:
            f.write(text)
        with pytest.raises(run_lock.RunLockedError, match=f"pid {other.pid}"):
            trainer.train(cfg)
        assert sorted(os.listdir(cfg.model_dir)) == ["train.lock"]  # nothing written
    finally:
        other.kill()
        other.wait()


def test_run_directory_is_accepted_as_init_from_and_teacher(tmp_path):
    from d3d_tf import models
    from d3d_tf.models import saving

    net = models.build_classifier("s3dg", num_classes=4, input_shape=(2, 16, 16, 3),
                                  depth_multiplier=0.1)
    saving.save_model_dir(str(tmp_path / "old_run" / "model"), net,
                          saving.spec_for(net, name="s3dg"))
    run_dir = str(tmp_path / "old_run")
    trainer.validate(_config(tmp_path, task="finetune", init_from=run_dir))
    trainer.validate(_config(tmp_path, task="distill", teacher=run_dir))
    with pytest.raises(FileNotFoundError, match="--teacher=.*not a model directory.*neither"):
        trainer.validate(_config(tmp_path, task="distill", teacher=str(tmp_path)))
