"""Every failure of a CLI is one line naming the flag, file or video, printed first; records
with labels outside the labels file (or the model) are refused, not trained or scored."""
import os
import subprocess
import sys

import export_helpers as H
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods
from d3d_tf.data import records
from d3d_tf.training import trainer


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=H.REPO, env=H.env(),
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "E0000", "W0000"))]
    return proc.returncode, lines


def test_export_errors_are_one_line(tmp_path):
    cases = [
        (["--model_dir=" + str(tmp_path / "missing"), f"--out_dir={tmp_path}"],
         f"d3d_tf.export: error: {tmp_path / 'missing'}: no such file"),
        (["--model_dir=" + H.model_dir(), f"--out_dir={tmp_path}", "--quantize=int8"],
         "d3d_tf.export: error: --quantize / --calibration_data apply to --format=tflite"),
    ]
    for args, first in cases:
        code, lines = _cli("d3d_tf.export", *args)
        assert code != 0 and lines and lines[0].startswith(first), lines
        assert len(lines) <= 2 and not any("Traceback" in ln for ln in lines), lines


def test_export_sizes_are_checked_up_front():
    from d3d_tf.deploy import common

    for kw, flag in (({"frames": 0}, "--num_frames"), ({"size": -1}, "--crop_size")):
        with pytest.raises(ValueError, match=f"{flag} must be >= 1"):
            common.load_for_export(H.model_dir(), **kw)


def _records_with_label(path, label):
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with records.ShardWriter(path) as w:
        w.write(records.make_sequence_example(frames, video_id="clip_a", label=0))
        w.write(records.make_sequence_example(frames, video_id="clip_b", label=label))


def test_evaluate_refuses_labels_beyond_the_model_and_takes_a_run_dir(tmp_path):
    _records_with_label(str(tmp_path / "val-0.tfrecord"), label=len(H.LABELS) + 1)
    run_dir = os.path.dirname(H.model_dir())
    code, lines = _cli("d3d_tf.evaluate", f"--model_dir={run_dir}",
                       f"--data={tmp_path / 'val-*.tfrecord'}", f"--out_dir={tmp_path / 'out'}",
                       "--batch_size=1")
    errors = [ln for ln in lines if "error" in ln]
    expected = ("d3d_tf.evaluate: error: video clip_b has label 5, outside the 4 classes of "
                "the labels file (or of the model): the records were prepared with another "
                "labels.txt")
    assert code == 1 and errors == [expected], lines
    assert not os.path.exists(tmp_path / "out" / "results.json")


def test_training_refuses_labels_outside_the_labels_file(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=4, size=16,
                                        with_flow=False)
    (tmp_path / "data" / "labels.txt").write_text("up\ndown\n")  # the records use 0..3
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=data,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=4,
                              train_steps=1, shuffle_buffer=1)
    with pytest.raises(ValueError, match=r"video train_[23] has label [23], outside the 2 "
                       r"classes of the labels file"):
        trainer.train(cfg)
    assert not os.path.exists(tmp_path / "run" / "train.lock")


def test_damaged_shard_during_training_is_named(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=4, size=16,
                                        with_flow=False)
    shard = tmp_path / "data" / "train-00001.tfrecord"
    blob = bytearray(shard.read_bytes())
    blob[40:60] = b"\x00" * 20  # inside the first record: its CRC no longer matches
    shard.write_bytes(bytes(blob))
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=data,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=4,
                              train_steps=1, shuffle_buffer=1)
    with pytest.raises(records.RecordError, match=r"train-00001\.tfrecord: truncated or "
                       r"corrupt TFRecord after 0 good records.*--verify="):
        trainer.train(cfg)


def test_verify_catches_a_shard_cut_inside_its_last_record(tmp_path):
    # TFRecordDataset reads such a shard without an error, one record short.
    data = train_fixtures.write_dataset(str(tmp_path), videos=4, frames=4, size=16,
                                        with_flow=False, shards=1)
    shard = tmp_path / "train-00000.tfrecord"
    blob = shard.read_bytes()
    shard.write_bytes(blob + blob[:5])  # a 5th record cut inside its 8-byte length
    assert sum(1 for _ in records.read_records(str(shard))) == 4
    with pytest.raises(records.RecordError, match=r"train-00000\.tfrecord: truncated: record 4 "
                       r"is cut off.*4 whole records"):
        records.verify_shards(data)


def test_flow_read_from_records_without_flow_is_one_line(tmp_path):
    from d3d_tf.data import pipeline, read_errors

    data = train_fixtures.write_dataset(str(tmp_path), videos=2, frames=4, size=16,
                                        with_flow=False)
    cfg = pipeline.PipelineConfig(data, num_frames=2, crop_size=16, training=False,
                                  batch_size=2, modalities=("flow",))
    with pytest.raises(ValueError, match=r"hold no optical flow.*--flow=tvl1"), \
            read_errors.explained(data):
        next(iter(pipeline.make_dataset(cfg)))
