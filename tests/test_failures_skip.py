"""--skip_corrupt_records: a shard cut mid-record and one with a flipped byte are read up to
the damage and counted by train, evaluate and int8 calibration; without it they stop the run
with one line naming the shard."""
import functools
import json
import logging
import os
import pathlib
import re
import struct
import subprocess
import sys

import export_helpers as H
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

from d3d_tf import methods, models
from d3d_tf.data import damaged_shards, pipeline, read_errors, records
from d3d_tf.models import saving
from d3d_tf.training import trainer

READABLE = {"train_0", "train_2", "train_5"}  # see _damaged_dataset


def _record_spans(path):
    """[(start, end)] byte ranges of the records of a TFRecord file."""
    blob, spans, offset = pathlib.Path(path).read_bytes(), [], 0
    while offset < len(blob):
        end = offset + 16 + struct.unpack("<Q", blob[offset:offset + 8])[0]
        spans.append((offset, end))
        offset = end
    return spans


def _damaged_dataset(out_dir):
    """3 shards of 2 videos (shard k: train_k, train_k+3). Shard 0 is cut inside its 2nd
    record (train_3), shard 1 has a flipped byte in the data of its 1st (train_1, so train_4
    behind it is lost too); shard 2 is intact."""
    pattern = train_fixtures.write_dataset(out_dir, videos=6, frames=4, size=16,
                                           with_flow=False, shards=3)
    cut = os.path.join(out_dir, "train-00000.tfrecord")
    start, end = _record_spans(cut)[1]
    with open(cut, "r+b") as f:
        f.truncate((start + end) // 2)
    flipped = os.path.join(out_dir, "train-00001.tfrecord")
    start, end = _record_spans(flipped)[0]
    blob = bytearray(pathlib.Path(flipped).read_bytes())
    blob[(start + end) // 2] ^= 0xFF
    pathlib.Path(flipped).write_bytes(bytes(blob))
    return pattern, cut, flipped


@functools.cache
def _tiny_model_dir() -> str:
    """s3dg up to Mixed_3c, depth 0.1, 2 frames of 16 px, 4 classes: cheap to evaluate and
    convert."""
    model = models.build_classifier("s3dg", num_classes=4, input_shape=(2, 16, 16, 3),
                                    depth_multiplier=0.1, final_endpoint="Mixed_3c")
    path = os.path.join(H.ROOT, "skip_tiny", "model")
    saving.save_model_dir(path, model, saving.spec_for(model, name="s3dg",
                                                       labels=list(train_fixtures.CLASSES)))
    return path


def _check_log(log, cut, flipped):
    shards = {s.path: s for s in log.shards}
    assert sorted(shards) == [cut, flipped]
    assert (shards[cut].records_read, shards[cut].records_lost, shards[cut].cut_off) == (
        1, 1, True)
    assert (shards[flipped].records_read, shards[flipped].records_lost,
            shards[flipped].cut_off) == (0, 2, False)
    assert "truncated record" in shards[cut].error
    assert "corrupted record" in shards[flipped].error


def test_pipeline_reads_up_to_the_damage_and_counts_it(tmp_path):
    pattern, cut, flipped = _damaged_dataset(str(tmp_path))
    cfg = pipeline.PipelineConfig(pattern, num_frames=2, crop_size=16, training=False,
                                  batch_size=1)
    log = damaged_shards.DamageLog()
    ids = {b["video_id"].numpy()[0].decode() for b in pipeline.make_dataset(cfg,
                                                                           skip_damaged=log)}
    assert ids == READABLE
    _check_log(log, cut, flipped)
    assert log.count_text() == "2 damaged shard(s) skipped, at least 3 record(s) lost"
    assert log.to_json()["records_lost"] == 3
    # Off (the default): the first damaged shard stops the iteration, named.
    for damaged in (cut, flipped):
        only = str(tmp_path / "only" / os.path.basename(damaged))
        os.makedirs(os.path.dirname(only), exist_ok=True)
        os.replace(damaged, only)
        cfg = pipeline.PipelineConfig(only, num_frames=2, crop_size=16, training=False,
                                      batch_size=1)
        with pytest.raises(records.RecordError, match=(
                rf"{only}: truncated or corrupt TFRecord after \d good records.*"
                rf"--verify='{only}'")), read_errors.explained(only):
            list(pipeline.make_dataset(cfg))


def test_train_skips_damaged_shards_and_counts_them(tmp_path, caplog):
    pattern, cut, flipped = _damaged_dataset(str(tmp_path / "data"))
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=pattern,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=2,
                              train_steps=1, skip_corrupt_records=True)
    with caplog.at_level(logging.INFO, logger="absl"):
        summary = trainer.train(cfg)
    assert summary["step"] == 1
    skipped = summary["skipped_damaged"]
    assert (skipped["damaged_shards"], skipped["records_lost"]) == (2, 3)
    with open(tmp_path / "run" / "train_summary.json") as f:
        assert json.load(f)["skipped_damaged"] == skipped
    text = caplog.text
    assert f"SKIPPED DAMAGED SHARD {cut} (truncated record" in text
    assert f"SKIPPED DAMAGED SHARD {flipped} (corrupted record" in text
    assert "(2 damaged shard(s) skipped, at least 3 record(s) lost)" in text  # progress lines
    assert "done with damaged data: 2 damaged shard(s)" in text


def _evaluate(*args):
    """`python -m d3d_tf.evaluate` in a subprocess (importing it here would collide with the
    flags other test modules' CLIs define in this process): (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "d3d_tf.evaluate", *args], cwd=H.REPO,
                          env=H.env(), capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_evaluate_reports_videos_read_and_skips(tmp_path):
    pattern, cut, flipped = _damaged_dataset(str(tmp_path / "data"))
    out = tmp_path / "eval"
    code, stdout, stderr = _evaluate(f"--model_dir={_tiny_model_dir()}", f"--data={pattern}",
                                     f"--out_dir={out}", "--batch_size=2", "--name=tiny",
                                     "--skip_corrupt_records")
    assert code == 0, stderr[-2000:]
    line = next(ln for ln in stdout.splitlines() if ln.startswith("tiny: "))
    assert line.startswith("tiny: 3 video(s) read; 2 damaged shard(s) skipped, at least 3 "
                           f"record(s) lost: {cut} (truncated record"), line
    with open(out / "results.json") as f:
        data = json.load(f)["tiny"]["data"]
    assert (data["videos_read"], data["damaged_shards"], data["records_lost"]) == (3, 2, 3)
    assert [s["path"] for s in data["shards"]] == [cut, flipped]


def test_evaluate_stops_at_a_damaged_shard_by_default(tmp_path):
    pattern, cut, _ = _damaged_dataset(str(tmp_path / "data"))
    code, _, stderr = _evaluate(f"--model_dir={_tiny_model_dir()}", f"--data={pattern}",
                                f"--out_dir={tmp_path / 'eval'}", "--batch_size=2")
    errors = [ln for ln in stderr.splitlines() if ln.startswith("d3d_tf.evaluate: error:")]
    assert code == 1 and len(errors) == 1, stderr[-2000:]
    assert re.search(rf"{re.escape(cut)}: truncated or corrupt TFRecord after 1 good records"
                     r".*prepare --verify=", errors[0]), errors[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "eval" / "results.json").exists()


def test_int8_calibration_skips_damaged_shards(tmp_path, caplog):
    from d3d_tf.deploy import common, tflite

    pattern, cut, _ = _damaged_dataset(str(tmp_path / "data"))
    cfg = common.ExportConfig(model_dir=_tiny_model_dir(), out_dir=str(tmp_path / "tflite"),
                              format="tflite", quantize="int8", calibration_data=pattern,
                              calibration_clips=6)
    with pytest.raises(records.RecordError, match=rf"{cut}: truncated or corrupt"):
        list(tflite.record_clips(pattern, 6, (2, 16, 16, 3)))  # what calibration reads
    cfg.skip_corrupt_records = True
    with caplog.at_level(logging.INFO, logger="absl"):
        path = tflite.export_tflite(cfg)
    assert os.path.getsize(path) > 0
    assert f"int8 calibration on {pattern}: 2 damaged shard(s) skipped, at least 3 " \
           f"record(s) lost: {cut}" in caplog.text
    with open(os.path.join(os.path.dirname(path),
                           f"{tflite.card_stem(path)}_model_card.json")) as f:
        card = json.load(f)
    assert card["calibration_skipped_damaged"]["damaged_shards"] == 2
