"""TFRecord schema: round trip, atomic shard writing, clear errors for damaged shards."""
import os

import numpy as np
import pytest

from d3d_tf.data import records


def _video(n=5, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth content so JPEG error is small and checkable.
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([x * 6 + t * 10, y * 8, np.full_like(x, 100 + t)], -1)
                       for t in range(n)]).astype(np.uint8)
    flow_q = rng.integers(0, 256, (n - 1, h, w, 2), dtype=np.uint8)
    return frames, flow_q


def test_round_trip_with_flow():
    frames, flow_q = _video()
    ex = records.make_sequence_example(frames, video_id="vid_1", label=3, label_name="jump",
                                       fps=12.5, flow_q=flow_q, jpeg_quality=95)
    out = records.decode_example(ex.SerializeToString())
    assert out["video_id"] == "vid_1" and out["label"] == 3 and out["label_name"] == "jump"
    assert out["fps"] == pytest.approx(12.5)
    assert (out["num_frames"], out["height"], out["width"]) == (5, 24, 32)
    assert out["rgb"].shape == frames.shape and out["rgb"].dtype == np.uint8
    assert np.abs(out["rgb"].astype(int) - frames).mean() < 3  # JPEG, quality 95
    # Flow is stored losslessly: exact round trip of the quantized values, x and y in order.
    np.testing.assert_array_equal(out["flow_q"], flow_q)


def test_round_trip_without_flow_and_unlabeled():
    frames, _ = _video(n=3)
    ex = records.make_sequence_example(frames, video_id="u")
    out = records.decode_example(ex.SerializeToString())
    assert out["label"] == -1 and out["label_name"] == ""
    assert "flow_q" not in out and out["rgb"].shape[0] == 3


def test_flow_count_and_size_checked():
    frames, flow_q = _video(n=4)
    with pytest.raises(ValueError, match="flow"):
        records.make_sequence_example(frames, video_id="a", flow_q=flow_q[:, :10])
    with pytest.raises(ValueError, match="one per frame pair"):
        records.build_sequence_example(video_id="a", label=0, label_name="x", fps=1.0,
                                       height=2, width=2, jpeg_frames=[b"a", b"b"],
                                       flow_images=[b"1", b"2"])


def test_shard_writer_is_atomic(tmp_path):
    frames, _ = _video(n=2)
    ex = records.make_sequence_example(frames, video_id="a")
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with records.ShardWriter(path) as w:
        w.write(ex)
        w.write(ex.SerializeToString())
        assert not os.path.exists(path) and os.path.exists(w.tmp_path)
    assert os.path.exists(path) and not os.path.exists(w.tmp_path)
    assert records.verify_shard(path) == 2

    failed = str(tmp_path / "train-00001-of-00002.tfrecord")
    with pytest.raises(RuntimeError), records.ShardWriter(failed) as w:
        w.write(ex)
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_truncated_shard_error_names_file(tmp_path):
    frames, flow_q = _video()
    path = str(tmp_path / "a.tfrecord")
    with records.ShardWriter(path) as w:
        for i in range(3):
            w.write(records.make_sequence_example(frames, video_id=f"v{i}", flow_q=flow_q))
    with open(path, "rb") as f:
        data = f.read()
    bad = str(tmp_path / "bad.tfrecord")
    with open(bad, "wb") as f:
        f.write(data[:-50])
    with pytest.raises(records.RecordError, match=r"bad\.tfrecord.*truncated or corrupt.*2 good"):
        records.verify_shard(bad)
    with pytest.raises(records.RecordError, match=r"bad\.tfrecord"):
        records.verify_shards(str(tmp_path / "*.tfrecord"))
    with pytest.raises(records.RecordError, match="no TFRecord files"):
        records.verify_shards(str(tmp_path / "none-*"))
