"""Inputs that give nothing to read, shards of mixed content, and files that do not fit: one
line naming the flag, the shards or the file, before any graph runs."""
import os
import pathlib
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures
from test_failures_skip import _evaluate, _record_spans, _tiny_model_dir

from d3d_tf import methods
from d3d_tf.data import records
from d3d_tf.training import trainer


def _flip_first_record(path):
    start, end = _record_spans(path)[0]
    blob = bytearray(pathlib.Path(path).read_bytes())
    blob[(start + end) // 2] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(blob))


def test_training_on_damaged_and_empty_shards_only_names_them(tmp_path):
    pattern = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=4, size=16,
                                           with_flow=False, shards=2)
    damaged = sorted(str(p) for p in (tmp_path / "data").glob("train-*.tfrecord"))
    for shard in damaged:
        _flip_first_record(shard)
    empty = tmp_path / "data" / "train-00002.tfrecord"
    empty.write_bytes(b"")
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=pattern,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=2,
                              train_steps=1, skip_corrupt_records=True)
    with pytest.raises(ValueError) as info:
        trainer.train(cfg)
    message = str(info.value)
    assert message.startswith(
        f"--train_data={pattern} gave no video: 2 of its 3 shard(s) damaged: 2 damaged "
        f"shard(s) skipped, 4 record(s) lost: {damaged[0]} (corrupted record"), message
    assert f"; {damaged[1]} (corrupted record" in message
    assert message.endswith(f"; 1 of its 3 shard(s) empty ({empty})"), message


def test_evaluate_with_every_shard_damaged_says_how_many(tmp_path):
    pattern = train_fixtures.write_dataset(str(tmp_path / "data"), videos=2, frames=4, size=16,
                                           with_flow=False, shards=2)
    shards = sorted(str(p) for p in (tmp_path / "data").glob("train-*.tfrecord"))
    for shard in shards:
        _flip_first_record(shard)
    code, _, stderr = _evaluate(f"--model_dir={_tiny_model_dir()}", f"--data={pattern}",
                                f"--out_dir={tmp_path / 'eval'}", "--batch_size=2",
                                "--skip_corrupt_records")
    errors = [ln for ln in stderr.splitlines() if ": error:" in ln or "Traceback" in ln]
    assert code == 1 and len(errors) == 1, stderr[-2000:]
    assert errors[0].startswith(
        f"d3d_tf.evaluate: error: --data={pattern} gave no video: 2 of its 2 shard(s) damaged: "
        f"2 damaged shard(s) skipped, 2 record(s) lost: {shards[0]} (corrupted record"), errors
    assert not (tmp_path / "eval" / "results.json").exists()


def test_flow_is_checked_in_every_shard(tmp_path):
    from d3d_tf.probes import task as probe

    # Shard 0 empty, shard 1 with flow, shard 2 without (prepared with --flow=none).
    data = tmp_path / "data"
    train_fixtures.write_dataset(str(data), videos=2, frames=4, size=16, shards=2)
    train_fixtures.write_dataset(str(tmp_path / "noflow"), videos=1, frames=4, size=16,
                                 with_flow=False, shards=1)
    os.replace(tmp_path / "noflow" / "train-00000.tfrecord", data / "train-00002.tfrecord")
    with records.ShardWriter(str(data / "train-00000.tfrecord")):
        pass
    pattern = str(data / "train-*.tfrecord")
    flowless = data / "train-00002.tfrecord"
    glob_, shard = re.escape(pattern), re.escape(str(flowless))
    with pytest.raises(ValueError, match=rf"--train_data={glob_}: 1 of its 3 shards hold no "
                       rf"optical flow \({shard}\) \(flow/encoded\)"):
        probe.require_flow_records(pattern, "--train_data")
    cfg = methods.TrainConfig(model_dir=str(tmp_path / "run"), train_data=pattern,
                              modality="flow", depth_multiplier=0.1, num_frames=2, crop_size=16,
                              batch_size=2, train_steps=1)
    with pytest.raises(ValueError, match=rf"needs optical flow \(--modality=flow\) but "
                       rf"--train_data={glob_}: 1 of its 3 shards hold no optical flow "
                       rf"\({shard}\): prepare"):
        trainer.validate(cfg)
    os.remove(flowless)  # an empty first shard is no error: the others have flow
    probe.require_flow_records(pattern, "--train_data")
    trainer.validate(cfg)


def test_a_truncated_slim_checkpoint_names_its_data_file(tmp_path):
    from test_convert_weights import slim_variables, write_slim_checkpoint

    from d3d_tf.weights import slim

    prefix = write_slim_checkpoint(tmp_path, slim_variables())
    (data,) = tmp_path.glob("model.ckpt-7.data-*")
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(slim.CheckpointError, match=rf"^{re.escape(str(data))}: variable '.*' "
                       r"cannot be read \(Read less bytes than requested\): the checkpoint's "
                       r"data file is truncated or damaged$"):
        slim.read_checkpoint(prefix)


def test_ava_records_of_another_label_map_are_refused_before_training(tmp_path):
    import numpy as np

    from d3d_tf.ava import ava
    from d3d_tf.ava import task as ava_task
    from d3d_tf.data import codec

    frames = codec.encode_jpeg_frames(np.zeros((2, 16, 16, 3), np.uint8), 90)
    with records.ShardWriter(str(tmp_path / "train-00000-of-00001.tfrecord")) as w:
        w.write(ava.keyframe_example(video_id="v", timestamp=902, jpeg_frames=frames, fps=2.0,
                                     height=16, width=16, boxes=[[0.1, 0.1, 0.5, 0.5]],
                                     labels=[[0, 1, 0]]))  # 3 classes
    map_path = tmp_path / "label_map.pbtxt"
    ava.write_label_map(str(map_path), [1, 2, 3, 4], ["a", "b", "c", "d"])
    pattern = str(tmp_path / "train-*.tfrecord")
    cfg = methods.TrainConfig(task="ava", model_dir=str(tmp_path / "run"), train_data=pattern,
                              depth_multiplier=0.1, num_frames=2, crop_size=16, batch_size=1,
                              train_steps=1)
    with pytest.raises(ValueError, match=rf"--train_data={re.escape(pattern)}: .*train-00000-of-"
                       rf"00001.tfrecord holds keyframes of 3 classes but {map_path} lists 4: "
                       r"the records were prepared with another label map"):
        trainer.train(cfg)
    assert not (tmp_path / "run").exists()
    # The same number of classes, but labels.txt (written with the records) names others.
    ava.write_label_map(str(map_path), [1, 2, 3], ["a", "b", "c"])
    (tmp_path / "labels.txt").write_text("sit\nstand\nwalk\n")
    with pytest.raises(ValueError, match=rf"{map_path} lists 3 classes \(a, b, c, \.\.\.\) but "
                       r"the records beside it were prepared with 3 \(.*labels.txt: sit, stand"):
        trainer.train(cfg)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    ava_task.validate(cfg)


def test_probe_endpoints_follow_the_models_family():
    import types

    from d3d_tf.models import s3dg
    from d3d_tf.probes import task as probe

    resnet = types.SimpleNamespace(name="r3d_18", config={"final_endpoint": "pooled"})
    assert probe.resolve_endpoints(("all",), resnet) == ["conv1", "layer1", "layer2", "layer3",
                                                         "layer4"]
    assert probe.resolve_endpoints(("layer2",), resnet) == ["layer2"]
    with pytest.raises(ValueError, match=r"--endpoints=pooled: a pooled \[B,C\] vector.*layer4"):
        probe.resolve_endpoints(("pooled",), resnet)
    with pytest.raises(ValueError, match="Unknown endpoint 'Mixed_3b'. Valid endpoints: conv1"):
        probe.resolve_endpoints(("Mixed_3b",), resnet)
    short = types.SimpleNamespace(name="r3d_18", config={"final_endpoint": "layer2"})
    assert probe.resolve_endpoints(("all",), short) == ["conv1", "layer1", "layer2"]
    s3d = types.SimpleNamespace(name="s3dg", config={"final_endpoint": "Mixed_3c"})
    assert probe.resolve_endpoints(("all",), s3d) == list(
        s3dg.VALID_ENDPOINTS[:s3dg.VALID_ENDPOINTS.index("Mixed_3c") + 1])
    assert probe.resolve_endpoints(("3A",), s3d) == [s3dg.resolve_endpoint("3A")]


def test_a_state_dict_of_another_architecture_is_refused_up_front():
    import numpy as np

    from d3d_tf.weights import torch_resnet3d, torch_s3d

    mobilenet = {"features.0.0.weight": np.zeros((32, 3, 3, 3), np.float32),
                 "features.0.1.weight": np.zeros(32, np.float32),
                 "classifier.1.weight": np.zeros((10, 1280), np.float32),
                 "classifier.1.bias": np.zeros(10, np.float32)}
    assert not torch_resnet3d.is_video_resnet(mobilenet)
    with pytest.raises(torch_s3d.StateDictError, match=r"^mobilenet.pth: not a torchvision S3D "
                       r"\(classifier.1.weight of shape \(10, 1280\), features.0.0.0.weight "
                       r"absent; .*reads torchvision's s3d, r3d_18, r2plus1d_18 and resnet18$"):
        torch_s3d.import_state_dict(mobilenet, input_shape=(16, 224, 224, 3),
                                    source="mobilenet.pth")
