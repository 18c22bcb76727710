"""Flow decoders (D3D §3.1), probe targets, loss and EPE."""
import keras
import numpy as np
import pytest

from d3d_tf import models
from d3d_tf.probes import decoders, flow_probe

C = 24


def _decoder_params(kind, dense=False, c=C):
    x = keras.Input((2, 4, 4, c))
    return keras.Model(x, decoders.decode(x, kind, dense=dense)).count_params()


def test_decoder_parameter_counts_match_the_formula():
    assert _decoder_params("simple") == 3 * C + 3
    assert _decoder_params("spatial") == 2 * (9 * C * C + C) + 3 * C + 3
    chans = decoders.PWC_CHANNELS
    ins = (C,) + chans[:-1]
    assert _decoder_params("pwc") == sum(9 * i * o + o for i, o in zip(ins, chans))
    dense_ins = [C + sum(chans[:k]) for k in range(len(chans))]
    assert _decoder_params("pwc", dense=True) == sum(9 * i * o + o
                                                     for i, o in zip(dense_ins, chans))
    # The paper's 3A (192 channels): the plain PWC decoder has 554,275 parameters.
    assert _decoder_params("pwc", c=192) == 554_275


@pytest.mark.parametrize("kind,dense", [("simple", False), ("spatial", False), ("pwc", False),
                                        ("pwc", True)])
def test_every_decoder_kernel_has_temporal_size_one_and_output_is_polar(kind, dense):
    x = keras.Input((3, 8, 8, C))
    model = keras.Model(x, decoders.decode(x, kind, dense=dense))
    kernels = [w for w in model.weights if w.path.endswith("kernel")]
    assert kernels and all(k.shape[0] == 1 for k in kernels)
    assert tuple(model.output.shape[1:]) == (3, 8, 8, 3)
    # No temporal mixing: changing one frame of the input changes only that frame's output.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 3, 8, 8, C)).astype("f4")
    b = a.copy()
    b[:, 1] += 1.0
    ya, yb = model(a).numpy(), model(b).numpy()
    np.testing.assert_array_equal(ya[:, [0, 2]], yb[:, [0, 2]])
    assert not np.allclose(ya[:, 1], yb[:, 1])


def test_attach_decoder_reads_the_endpoint_grid_and_rejects_missing_endpoints():
    net = models.build_classifier("s3dg", num_classes=3, input_shape=(4, 32, 32, 3),
                                  depth_multiplier=0.25, endpoints=("3A",),
                                  final_endpoint="Mixed_3b")
    probe = decoders.attach_decoder(net, "MaxPool_3a_3x3", "simple")
    assert tuple(probe.output["flow"].shape[1:]) == (2, 4, 4, 3)
    assert set(probe.output) == {"flow"}
    assert len(decoders.decoder_variables(probe)) == 2
    with pytest.raises(ValueError, match="Mixed_3b"):
        decoders.attach_decoder(net, "3B", "pwc")
    with pytest.raises(ValueError, match="decoder 'big' unknown"):
        decoders.attach_decoder(net, "3A", "big")


def _numpy_loss(pred, target_flow):
    x, y = target_flow[..., 0], target_flow[..., 1]
    mag = np.hypot(x, y)
    th = np.arctan2(y, x)
    per_cell = ((pred[..., 0] - mag) ** 2 + mag * ((pred[..., 1] - np.sin(th)) ** 2 +
                                                   (pred[..., 2] - np.cos(th)) ** 2))
    return per_cell.reshape(per_cell.shape[0], -1).mean(1)


def test_loss_equals_a_numpy_implementation_of_section_3_1():
    rng = np.random.default_rng(3)
    pred = rng.normal(size=(2, 2, 3, 3, 3)).astype("f4")
    target = rng.normal(scale=3.0, size=(2, 2, 3, 3, 2)).astype("f4")
    target[0, 0, 0, 0] = 0.0  # zero flow: direction (0, 0, 1), weight 0
    got = flow_probe.flow_loss(pred, target).numpy()
    np.testing.assert_allclose(got, _numpy_loss(pred, target), rtol=1e-5)
    # The sin/cos terms are weighted by the target magnitude: a perfect polar prediction costs 0.
    perfect = flow_probe.to_polar(target).numpy()
    np.testing.assert_allclose(flow_probe.flow_loss(perfect, target).numpy(), 0.0, atol=1e-6)


def test_epe_is_zero_for_a_perfect_prediction_and_mean_magnitude_for_zeros():
    rng = np.random.default_rng(4)
    target = rng.normal(scale=2.0, size=(3, 2, 4, 4, 2)).astype("f4")
    polar = flow_probe.to_polar(target)
    np.testing.assert_allclose(flow_probe.from_polar(polar).numpy(), target, atol=1e-5)
    np.testing.assert_allclose(flow_probe.epe(flow_probe.from_polar(polar), target).numpy(),
                               0.0, atol=1e-5)
    mean_mag = np.hypot(target[..., 0], target[..., 1]).reshape(3, -1).mean(1)
    np.testing.assert_allclose(flow_probe.zeros_epe(target).numpy(), mean_mag, rtol=1e-5)
    # The predicted direction is not normalized: a half-length (cos, sin) halves the vector.
    np.testing.assert_allclose(flow_probe.from_polar([[2.0, 0.5, 0.0], [-1.0, 0.0, 1.0]]),
                               [[0.0, 1.0], [0.0, 0.0]], atol=1e-6)
    # A prediction off by (3, 4) px everywhere has EPE 5.
    np.testing.assert_allclose(flow_probe.epe(target + [3.0, 4.0], target).numpy(), 5.0,
                               rtol=1e-5)


def test_target_pooling_on_a_constructed_flow_field():
    # 4 frames of 8x8: x flow = frame index, y flow = 1 in the top-left 4x4 quadrant only.
    flow = np.zeros((1, 4, 8, 8, 2), np.float32)
    flow[..., 0] = np.arange(4)[:, None, None]
    flow[:, :, :4, :4, 1] = 1.0
    pooled = flow_probe.pool_flow(flow, (2, 2, 2)).numpy()
    assert pooled.shape == (1, 2, 2, 2, 2)
    np.testing.assert_allclose(pooled[0, :, 0, 0, 0], [0.5, 2.5])   # mean of frames {0,1}, {2,3}
    np.testing.assert_allclose(pooled[0, 0, :, :, 1], [[1, 0], [0, 0]])
    # Blocks of 4 pixels: a 2-px-wide stripe in one block averages to half its value.
    stripe = np.zeros((1, 1, 8, 8, 2), np.float32)
    stripe[:, :, :, 0:2, 0] = 4.0
    np.testing.assert_allclose(flow_probe.pool_flow(stripe, (1, 2, 2)).numpy()[0, 0, :, :, 0],
                               [[2, 0], [2, 0]])
    # Uneven bins (5 -> 2: inputs 0-2 and 2-4) and the pipeline scaling to pixels.
    np.testing.assert_allclose(flow_probe.pool_matrix(5, 2),
                               [[1 / 3, 1 / 3, 1 / 3, 0, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(flow_probe.targets(flow / 20.0, (2, 2, 2)).numpy(), pooled,
                               rtol=1e-6)
