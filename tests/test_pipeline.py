"""tf.data pipeline: shapes, RGB/flow alignment, flip, eval clips, determinism, sharding.

Videos have known content: RGB channel 0 = 20 * frame index, channel 1 = 3 * x, channel 2 =
4 * y; flow pair p has x channel q = 128 + 5 * (p + 1) everywhere and y channel q = 60 + 2 * x,
so a clip tells which frames, which flow pairs, which crop and whether it was flipped.
"""
import numpy as np
import pytest
import tensorflow as tf

from d3d_tf.data import flow as flow_lib
from d3d_tf.data import pipeline, records
from d3d_tf.data.pipeline import PipelineConfig

H, W = 48, 64


def known_video(n):
    frames = np.zeros((n, H, W, 3), np.uint8)
    frames[..., 0] = (np.arange(n) * 20)[:, None, None]
    frames[..., 1] = (np.arange(W) * 3)[None, None, :]
    frames[..., 2] = (np.arange(H) * 4)[None, :, None]
    flow_q = np.zeros((n - 1, H, W, 2), np.uint8)
    flow_q[..., 0] = (128 + 5 * (np.arange(n - 1) + 1))[:, None, None]
    flow_q[..., 1] = (60 + 2 * np.arange(W))[None, None, :]
    return frames, flow_q


def write_records(folder, num_videos=6, num_shards=2, n=10, flow=True):
    writers = [records.ShardWriter(str(folder / f"d-{k:05d}-of-{num_shards:05d}.tfrecord"))
               for k in range(num_shards)]
    for i in range(num_videos):
        frames, flow_q = known_video(n)
        writers[i % num_shards].write(records.make_sequence_example(
            frames, video_id=f"v{i}", label=i, label_name=f"c{i}",
            flow_q=flow_q if flow else None, jpeg_quality=100))
    for w in writers:
        w.close()
    return str(folder / "d-*.tfrecord")


def frame_indices(rgb):
    """[T,h,w,3] in [-1,1] -> stored frame index of each clip frame (from channel 0)."""
    u = (rgb[..., 0] + 1.0) * 127.5
    return np.round(u.mean(axis=(1, 2)) / 20).astype(int)


def flow_columns(flow):
    """[T,h,w,2] -> stored x column of each output column (from the flow y channel)."""
    q = (flow[..., 1] + 1.0) * 127.5
    return (q - 60) / 2


@pytest.fixture(scope="module")
def pattern(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("rec"))


def test_training_shapes_and_labels(pattern):
    cfg = PipelineConfig(pattern, num_frames=4, crop_size=32, batch_size=3,
                         modalities=("rgb", "flow"), seed=0)
    batch = next(iter(pipeline.make_dataset(cfg)))
    assert batch["rgb"].shape == (3, 4, 32, 32, 3) and batch["rgb"].dtype == tf.float32
    assert batch["flow"].shape == (3, 4, 32, 32, 2) and batch["flow"].dtype == tf.float32
    assert batch["label"].dtype == tf.int32 and batch["video_id"].dtype == tf.string
    ids = [v.decode() for v in batch["video_id"].numpy()]
    np.testing.assert_array_equal(batch["label"].numpy(), [int(v[1:]) for v in ids])
    assert -1.0 <= batch["rgb"].numpy().min() and batch["rgb"].numpy().max() <= 1.0
    rgb_only = next(iter(pipeline.make_dataset(
        PipelineConfig(pattern, num_frames=4, crop_size=32, batch_size=2, rgb_range="[0,1]"))))
    assert set(rgb_only) == {"rgb", "label", "video_id"}
    assert 0.0 <= rgb_only["rgb"].numpy().min() and rgb_only["rgb"].numpy().max() <= 1.0
    assert pipeline.num_videos(pattern) == 6


def test_rgb_and_flow_share_window_crop_and_flip(pattern):
    n, stride = 10, 3
    cfg = PipelineConfig(pattern, num_frames=4, frame_stride=stride, crop_size=32,
                         batch_size=4, modalities=("rgb", "flow"), seed=3)
    flips = set()
    for batch in pipeline.make_dataset(cfg).take(6):
        for rgb, flow in zip(batch["rgb"].numpy(), batch["flow"].numpy()):
            f = frame_indices(rgb)
            # Temporal window: stride s, wrapping modulo N only if needed (here N >= L).
            np.testing.assert_array_equal(f, f[0] + stride * np.arange(4))
            assert 0 <= f[0] <= n - (3 * stride + 1)
            # Spatial: the flow y channel holds the stored column; RGB channel 1 too.
            cols_flow = flow_columns(flow).mean(axis=1)            # [T, w]
            cols_rgb = ((rgb[..., 1] + 1) * 127.5 / 3).mean(axis=1)
            np.testing.assert_allclose(cols_flow, cols_rgb, atol=1.0)
            flipped = cols_flow[0, 0] > cols_flow[0, -1]
            flips.add(bool(flipped))
            step = -1 if flipped else 1
            np.testing.assert_allclose(cols_flow[0], cols_flow[0, 0] + step * np.arange(32),
                                       atol=1e-3)
            assert 0 <= cols_flow[0].min() and cols_flow[0].max() <= W - 1
            # Flow pair of clip frame j is min(f_j, N-2); its x value is negated on flip.
            pairs = np.minimum(f, n - 2)
            q = 128 + 5 * (pairs + 1)
            expected_x = flow_lib.dequantize_flow(q) / flow_lib.FLOW_BOUND
            expected_x = -expected_x if flipped else expected_x
            np.testing.assert_allclose(flow[..., 0].mean(axis=(1, 2)), expected_x, atol=1e-5)
    assert flips == {True, False}


def test_random_flip_off_never_flips(pattern):
    cfg = PipelineConfig(pattern, num_frames=4, crop_size=32, batch_size=4,
                         modalities=("rgb", "flow"), seed=3, random_flip=False)
    for batch in pipeline.make_dataset(cfg).take(6):
        for flow in batch["flow"].numpy():
            cols = flow_columns(flow).mean(axis=1)
            assert cols[0, 0] < cols[0, -1]  # columns increase left to right: not mirrored
            assert (flow[..., 0] > 0).all()  # stored flow x is positive, never negated


def test_eval_yields_k_clips_per_video_once(pattern):
    t, k = 4, 3
    cfg = PipelineConfig(pattern, num_frames=t, crop_size=32, training=False, num_clips=k,
                         batch_size=4, modalities=("rgb", "flow"))
    ids, starts = [], []
    for batch in pipeline.make_dataset(cfg):
        ids += [v.decode() for v in batch["video_id"].numpy()]
        for rgb, flow in zip(batch["rgb"].numpy(), batch["flow"].numpy()):
            starts.append(frame_indices(rgb)[0])
            cols = flow_columns(flow).mean(axis=(0, 1))
            assert cols[0] == pytest.approx((W - 32) // 2, abs=1e-3)  # centre crop, no flip
    assert sorted(ids) == sorted([f"v{i}" for i in range(6)] * k)
    # K evenly spaced starts over [0, N - L], K clips of a video next to each other.
    assert starts == [0, 3, 6] * 6
    assert ids[:3] == [ids[0]] * 3


def test_eval_resize_short_side_scales_flow(pattern):
    # Stored 48x64, short side -> 24, crop 16: a 32 px stored window resized by 1/2.
    cfg = PipelineConfig(pattern, num_frames=2, crop_size=16, training=False, batch_size=6,
                         modalities=("rgb", "flow"), resize_short_side=24)
    batch = next(iter(pipeline.make_dataset(cfg)))
    assert batch["rgb"].shape == (6, 2, 16, 16, 3)
    flow = batch["flow"].numpy()[0]
    f = frame_indices(batch["rgb"].numpy()[0])
    q = 128 + 5 * (np.minimum(f, 8) + 1)
    # Flow values are in pixels of the image they describe: halved with the image.
    np.testing.assert_allclose(flow[..., 0].mean(axis=(1, 2)),
                               0.5 * flow_lib.dequantize_flow(q) / 20.0, atol=1e-5)
    # Flow y channel holds x column * 2 + 60 and was halved too; columns step by 2 stored px.
    cols = ((flow[..., 1] / 0.5 + 1.0) * 127.5 - 60) / 2
    assert np.diff(cols.mean(axis=(0, 1))).mean() == pytest.approx(2.0, abs=0.05)


def test_short_videos_loop(tmp_path):
    pat = write_records(tmp_path, num_videos=1, num_shards=1, n=3)
    cfg = PipelineConfig(pat, num_frames=5, crop_size=32, training=False, batch_size=1,
                         modalities=("rgb", "flow"))
    batch = next(iter(pipeline.make_dataset(cfg)))
    np.testing.assert_array_equal(frame_indices(batch["rgb"].numpy()[0]), [0, 1, 2, 0, 1])
    pairs = [0, 1, 1, 0, 1]  # min(f, N-2)
    np.testing.assert_allclose(batch["flow"].numpy()[0, ..., 0].mean(axis=(1, 2)),
                               flow_lib.dequantize_flow(128 + 5 * (np.array(pairs) + 1)) / 20,
                               atol=1e-5)
    train = PipelineConfig(pat, num_frames=5, crop_size=32, batch_size=1, seed=0)
    for batch in pipeline.make_dataset(train).take(4):
        f = frame_indices(batch["rgb"].numpy()[0])
        np.testing.assert_array_equal(f, (f[0] + np.arange(5)) % 3)


def test_pipelines_run_without_tf_data_autotuner(pattern):
    # Deleting an iterator waits for the autotuner's next wake-up (its period grows to 60 s):
    # with it on, trainings sat idle for up to a minute after their last step.
    for training in (True, False):
        cfg = PipelineConfig(pattern, num_frames=4, crop_size=24, batch_size=2,
                             training=training, seed=0)
        options = pipeline.make_dataset(cfg).options()
        assert options.autotune.enabled is False and options.deterministic is True


def test_seeded_pipeline_is_deterministic(pattern):
    def take(seed):
        cfg = PipelineConfig(pattern, num_frames=4, crop_size=24, batch_size=4,
                             modalities=("rgb", "flow"), seed=seed, min_scale=0.5)
        return [b for b in pipeline.make_dataset(cfg).take(3)]
    a, b, c = take(5), take(5), take(6)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy())
    assert any(not np.array_equal(x["rgb"].numpy(), z["rgb"].numpy()) for x, z in zip(a, c))


@pytest.mark.parametrize("num_shards", [4, 1])  # file sharding; element-sharding fallback
def test_input_context_splits_the_data(tmp_path, num_shards):
    pat = write_records(tmp_path, num_videos=8, num_shards=num_shards, n=4, flow=False)
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                         num_replicas_in_sync=2)
        cfg = PipelineConfig(pat, num_frames=2, crop_size=16, training=False, batch_size=4)
        ids = []
        for batch in pipeline.make_dataset(cfg, ctx):
            assert batch["rgb"].shape[0] <= 2  # per-replica batch of the global 4
            ids += [v.decode() for v in batch["video_id"].numpy()]
        assert len(ids) == 4
        seen.append(set(ids))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == {f"v{i}" for i in range(8)}


def test_bad_config_and_missing_flow(tmp_path):
    pat = write_records(tmp_path, num_videos=1, num_shards=1, n=3, flow=False)
    with pytest.raises(ValueError, match="modalities"):
        pipeline.make_dataset(PipelineConfig(pat, modalities=("depth",)))
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        pipeline.make_dataset(PipelineConfig(str(tmp_path / "x-*")))
    cfg = PipelineConfig(pat, num_frames=2, crop_size=16, training=False, batch_size=1,
                         modalities=("flow",))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no flow/encoded"):
        next(iter(pipeline.make_dataset(cfg)))


def _corner(rgb):
    """[T,s,s,3] in [-1,1] of a known video, unresized -> stored (y0, x0) of the crop, from
    the mean position (JPEG's chroma subsampling blurs single pixels)."""
    u = (rgb + 1.0) * 127.5
    half = (rgb.shape[1] - 1) / 2
    return round(float(u[..., 2].mean() / 4 - half)), round(float(u[..., 1].mean() / 3 - half))


def test_eval_three_crops_along_the_long_side(pattern):
    # Landscape 48x64, crop 32: x0 = 0 (left), 16 (centre), 32 (right); y0 = (48 - 32) / 2.
    t, k = 4, 2
    cfg = PipelineConfig(pattern, num_frames=t, crop_size=32, training=False, num_clips=k,
                         num_crops=3, batch_size=5, modalities=("rgb", "flow"))
    ids, corners, starts, flow_x0 = [], [], [], []
    for batch in pipeline.make_dataset(cfg):
        ids += [v.decode() for v in batch["video_id"].numpy()]
        for rgb, flow in zip(batch["rgb"].numpy(), batch["flow"].numpy()):
            corners.append(_corner(rgb))
            starts.append(frame_indices(rgb)[0])
            flow_x0.append(flow_columns(flow).mean(axis=(0, 1))[0])
    assert ids == [f"v{i}" for i in range(6) for _ in range(k * 3)]
    # Per video: the K clips of the left crop, then of the centre, then of the right.
    assert corners == [(8, 0), (8, 0), (8, 16), (8, 16), (8, 32), (8, 32)] * 6
    assert starts == [0, 6] * 3 * 6
    np.testing.assert_allclose(flow_x0, [x for _, x in corners], atol=1e-3)  # same windows


def test_eval_three_crops_of_a_portrait_video(tmp_path):
    # Portrait 64x40, short side 40 -> 20, crop 16: a 32 px stored square at y0 = 0, 16, 32.
    frames = np.zeros((3, 64, 40, 3), np.uint8)
    frames[..., 1] = (np.arange(40) * 3)[None, None, :]
    frames[..., 2] = (np.arange(64) * 4)[None, :, None]
    path = str(tmp_path / "p.tfrecord")
    writer = records.ShardWriter(path)
    writer.write(records.make_sequence_example(frames, video_id="p", label=0, label_name="c",
                                               jpeg_quality=100))
    writer.close()
    cfg = PipelineConfig(path, num_frames=2, crop_size=16, training=False, num_crops=3,
                         resize_short_side=20, batch_size=3)
    (batch,) = list(pipeline.make_dataset(cfg))
    rgb = batch["rgb"].numpy()
    assert rgb.shape == (3, 2, 16, 16, 3)
    # The resize averages neighbouring stored pixels, so read the crop's mean position.
    u = (rgb + 1.0) * 127.5
    y_mid = u[..., 2].mean(axis=(1, 2, 3)) / 4
    x_mid = u[..., 1].mean(axis=(1, 2, 3)) / 3
    np.testing.assert_allclose(y_mid, [15.5, 31.5, 47.5], atol=0.6)
    np.testing.assert_allclose(x_mid, [19.5] * 3, atol=0.6)
    offsets = pipeline.crop_offsets(tf.constant(64), tf.constant(40), tf.constant(32), 3)
    np.testing.assert_array_equal(offsets.numpy(), [[0, 4], [16, 4], [32, 4]])
    with pytest.raises(ValueError, match="num_crops must be 1 or 3, got 2"):
        PipelineConfig(path, num_crops=2).validate()
