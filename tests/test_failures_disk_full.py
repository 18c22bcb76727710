"""A full disk stops every tool with one line naming the file being written and what was kept;
the files under their final names stay whole. /dev/full stands in for a full disk: every
write to it fails with ENOSPC, so a symlink at the temporary name makes a real write fail."""
import errno
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from test_prepare import ROOT, make_tree

from d3d_tf import methods
from d3d_tf.core import atomic, cli

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


def test_an_artifact_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    path = str(tmp_path / "model.tflite")
    atomic.write_bytes(path, b"old")
    os.symlink("/dev/full", atomic.temp_path(path))
    with pytest.raises(OSError) as info:
        atomic.write_bytes(path, b"x" * 100_000)
    assert info.value.errno == errno.ENOSPC
    with open(path, "rb") as f:
        assert f.read() == b"old" and os.listdir(tmp_path) == ["model.tflite"]
    assert cli.error_line(info.value, "d3d_tf.export") == (
        f"d3d_tf.export: error: No space left on device while writing {path}: every file under "
        "its final name is complete, the previous version or none (files are written to a "
        "temporary name and renamed); free space and rerun")


def test_tensorflow_disk_full_is_one_line_also_when_wrapped(tmp_path):
    with pytest.raises(tf.errors.ResourceExhaustedError) as info, \
            tf.io.TFRecordWriter("/dev/full") as w:
        w.write(b"x" * 100_000)
    try:
        raise RuntimeError("saving failed") from info.value
    except RuntimeError as wrapped:
        line = cli.error_line(wrapped, "d3d_tf.train")
    assert line == ("d3d_tf.train: error: No space left on device while writing /dev/full: the "
                    "checkpoints saved before are intact; free space and rerun the same command "
                    "to resume from the newest")
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert cli.error_line(quota, "d3d_tf.x").startswith("d3d_tf.x: error: Disk quota exceeded: ")
    # Out of (device) memory is no full disk, and an unexpected error keeps its traceback.
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert cli.error_line(oom, "d3d_tf.train") is None
    assert cli.error_line(RuntimeError("bug"), "d3d_tf.train") is None


def test_training_stopped_by_a_full_disk_keeps_its_checkpoints(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.dirname(__file__))
    import train_fixtures

    from d3d_tf.training import trainer

    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=4, size=16,
                                        with_flow=False)
    save = tf.train.CheckpointManager.save

    def save_on_a_disk_that_fills_up(self, checkpoint_number=None, **kw):
        if checkpoint_number == 2:  # what TF raises when the data file cannot be written
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{self.directory}/ckpt-2_temp/part-00000-of-00001.data-00000-of"
                "-00001.tempstate7; No space left on device")
        return save(self, checkpoint_number=checkpoint_number, **kw)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_on_a_disk_that_fills_up)
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=data,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=4,
                              train_steps=2, checkpoint_every=1, shuffle_buffer=1)
    with pytest.raises(tf.errors.ResourceExhaustedError) as info:
        trainer.train(cfg)
    assert cli.error_line(info.value, "d3d_tf.train").startswith(
        f"d3d_tf.train: error: No space left on device while writing {tmp_path}/run/ckpt/"
        "ckpt-2_temp/part-00000-of-00001.data-00000-of-00001.tempstate7: the checkpoints saved "
        "before are intact")
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "ckpt")).endswith("ckpt-1")


def test_prepare_on_a_full_disk_is_one_line_and_keeps_the_finished_shard(tmp_path):
    root = make_tree(tmp_path / "v", per_class=2, n=4, size=16)
    out = tmp_path / "out"
    os.makedirs(out)
    partial = out / ".train-00001-of-00002.tfrecord.partial"
    os.symlink("/dev/full", partial)  # the second shard's writes fail as on a full disk
    cmd = [sys.executable, "-m", "d3d_tf.prepare", "--format=folder", f"--video_dir={root}",
           f"--out_dir={out}", "--flow=none", "--workers=1", "--num_shards=2"]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    errors = [ln for ln in proc.stderr.splitlines() if ": error:" in ln or "Traceback" in ln]
    assert proc.returncode == 1 and errors == [(
        f"d3d_tf.prepare: error: No space left on device while writing {partial}: the finished "
        "shards are kept (a shard is renamed to its final name only when complete); free space "
        "and rerun the same command to write the rest")], proc.stderr
    assert os.path.exists(out / "train-00000-of-00002.tfrecord")
    assert not os.path.lexists(partial) and not os.path.exists(out / "train-00001-of-00002"
                                                                       ".tfrecord")
