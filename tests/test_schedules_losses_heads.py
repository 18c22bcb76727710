"""Learning-rate schedules, label smoothing and the global head against hand-computed values."""
import math

import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import informative_weights, spread

from d3d_tf import methods, models
from d3d_tf.training import losses, trainer


def _schedule(**kw):
    cfg = methods.TrainConfig(model_dir="unused", train_data="unused", learning_rate=0.1, **kw)
    return trainer.make_schedule(cfg)


def _values(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_constant_schedule_with_warmup():
    s = _schedule(schedule="constant", warmup_steps=10)
    assert _values(s, [0, 5, 10, 100]) == pytest.approx([0.0, 0.05, 0.1, 0.1])


def test_step_schedule_with_warmup():
    s = _schedule(schedule="step", warmup_steps=10, step_boundaries=(20, 40), step_factor=0.1)
    # Warmup towards base(10) = 0.1; then 0.1 up to step 20, 0.01 up to 40, 0.001 after.
    got = _values(s, [5, 15, 20, 21, 40, 41, 1000])
    assert got == pytest.approx([0.05, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rel=1e-5)


def test_cosine_schedule_with_warmup():
    s = _schedule(schedule="cosine", warmup_steps=10, train_steps=110, cosine_alpha=0.0)
    # Linear warmup to 0.1 at step 10, then 0.1 * (1 + cos(pi * (step - 10) / 100)) / 2.
    want = [0.05, 0.1, 0.1 * (1 + math.cos(math.pi * 0.25)) / 2, 0.05, 0.0]
    assert _values(s, [5, 10, 35, 60, 110]) == pytest.approx(want, abs=1e-6)
    floor = _schedule(schedule="cosine", train_steps=100, cosine_alpha=0.1)
    assert _values(floor, [0, 100]) == pytest.approx([0.1, 0.01], rel=1e-5)


@pytest.mark.parametrize("kw", [
    {"schedule": "constant", "warmup_steps": 10},
    {"schedule": "step", "warmup_steps": 10, "step_boundaries": (20, 40)},
])
def test_warmup_schedule_round_trips_through_its_config(kw):
    s = _schedule(**kw)
    again = trainer.WarmupSchedule.from_config(s.get_config())
    steps = [0, 5, 10, 20, 21, 45]
    assert _values(again, steps) == pytest.approx(_values(s, steps))
    assert s.get_config()["base"] is not None


def test_label_smoothing_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 3, 4, 1])
    eps, k = 0.2, 5
    target = np.full((4, k), eps / k)
    target[np.arange(4), labels] += 1 - eps
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want = -(target * logp).sum(axis=1)
    got = losses.cross_entropy(tf.constant(labels), tf.constant(logits), label_smoothing=eps)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    plain = losses.cross_entropy(tf.constant(labels), tf.constant(logits)).numpy()
    assert np.all(np.abs(plain - want) > 1e-3)  # smoothing changes every example's loss


def test_global_head_is_the_mean_over_time_and_space():
    kw = {"num_classes": 3, "input_shape": (8, 64, 64, 3), "depth_multiplier": 0.25,
          "final_endpoint": "Mixed_3c", "dropout_keep_prob": 1.0, "endpoints": ("Mixed_3c",)}
    net = models.build_classifier("s3dg", head="global", **kw)
    informative_weights(net)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 8, 64, 64, 3)).astype("float32")
    out = net(x, training=False)
    feats = np.asarray(out["Mixed_3c"])  # [3,4,8,8,C]: larger than slim's [2,7,7] window
    assert feats.shape[1:4] == (4, 8, 8)
    kernel = np.asarray(net.get_layer("Logits.Conv2d_0c_1x1").kernel)[0, 0, 0]
    bias = np.asarray(net.get_layer("Logits.Conv2d_0c_1x1").bias)
    want = feats.mean(axis=(1, 2, 3)) @ kernel + bias
    np.testing.assert_allclose(np.asarray(out["logits"]), want, rtol=1e-4, atol=1e-5)
    # The slim head with the same weights pools [2,7,7] windows first: edge positions count
    # less, so its logits differ on this map.
    slim = models.build_classifier("s3dg", head="slim", **kw)
    slim.set_weights(net.get_weights())
    slim_logits = np.asarray(slim(x, training=False)["logits"])
    assert spread(want) > 0.01 and np.abs(slim_logits - want).max() > 1e-3
