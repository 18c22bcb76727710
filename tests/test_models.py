"""Architecture tests of the S3D-G family against the TF-Slim reference (`nets/s3dg.py` and its
test), tabulated in docs/architecture.md."""
import os
import platform
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_fixtures import informative_weights, spread
from process_helpers import run_side_by_side

import d3d_tf
from d3d_tf import models
from d3d_tf.models import layers as L
from d3d_tf.models import naming, summary

# The reference table of docs/architecture.md: input [1,64,224,224,3].
REFERENCE_224 = {
    "Conv2d_1a_7x7": (32, 112, 112, 64),
    "MaxPool_2a_3x3": (32, 56, 56, 64),
    "Conv2d_2b_1x1": (32, 56, 56, 64),
    "Conv2d_2c_3x3": (32, 56, 56, 192),
    "MaxPool_3a_3x3": (32, 28, 28, 192),
    "Mixed_3b": (32, 28, 28, 256),
    "Mixed_3c": (32, 28, 28, 480),
    "MaxPool_4a_3x3": (16, 14, 14, 480),
    "Mixed_4b": (16, 14, 14, 512),
    "Mixed_4c": (16, 14, 14, 512),
    "Mixed_4d": (16, 14, 14, 512),
    "Mixed_4e": (16, 14, 14, 528),
    "Mixed_4f": (16, 14, 14, 832),
    "MaxPool_5a_2x2": (8, 7, 7, 832),
    "Mixed_5b": (8, 7, 7, 832),
    "Mixed_5c": (8, 7, 7, 1024),
}


def _shapes(model):
    return {k: tuple(v.shape[1:]) for k, v in model.output.items()}


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["3d", "2d"])
def test_endpoint_shapes_full_size(pooling):
    backbone = models.build_backbone("s3dg", input_shape=(64, 224, 224, 3), pooling=pooling)
    assert list(backbone.output) == list(REFERENCE_224)
    assert _shapes(backbone) == REFERENCE_224


@pytest.mark.slow
def test_full_size_forward_pass_runs():
    net = models.build_classifier("s3dg", num_classes=400, input_shape=(64, 224, 224, 3))
    clip = np.random.default_rng(0).uniform(-1, 1, (1, 64, 224, 224, 3)).astype("float32")
    logits = np.asarray(net(clip, training=False))
    assert logits.shape == (1, 400)
    assert np.all(np.isfinite(logits))


@pytest.mark.slow
def test_endpoint_shapes_112_and_10_frames():
    small = models.build_backbone("s3dg", input_shape=(64, 112, 112, 3))
    assert _shapes(small)["Mixed_5c"] == (8, 4, 4, 1024)
    assert _shapes(small)["Conv2d_2c_3x3"] == (32, 28, 28, 192)
    short = models.build_backbone("s3dg", input_shape=(10, 224, 224, 3))
    assert _shapes(short)["Mixed_5c"] == (2, 7, 7, 1024)
    assert _shapes(short)["Mixed_4f"] == (3, 14, 14, 832)
    # The slim head's [2,7,7] pool shrinks to the 4x4 map and still gives [B, classes].
    net = models.build_classifier("s3dg", num_classes=7, input_shape=(16, 112, 112, 3))
    assert tuple(net.output.shape) == (None, 7)


# --- parameter counts, computed from the layer table, not from the model ---------------------

STEM, CONV2B, CONV2C = 64, 64, 192
BLOCKS = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


def expected_params(first_t, separable, gating, classes=400, cin=3):
    """(trainable, total) parameters of the slim S3D-G family from its channel table."""
    trainable = total = 0

    def unit(k_volume, c_in, c_out):  # conv without bias + BN without gamma
        nonlocal trainable, total
        trainable += k_volume * c_in * c_out + c_out  # kernel + beta
        total += k_volume * c_in * c_out + 3 * c_out  # + moving mean and variance

    def st_conv(c_in, c_out):  # [3,3,3] conv
        nonlocal trainable, total
        if separable:
            unit(9, c_in, c_out)
            trainable += 3 * c_out * c_out + c_out  # temporal kernel + bias, no BN
            total += 3 * c_out * c_out + c_out
        else:
            unit(27, c_in, c_out)

    def gate(c):
        nonlocal trainable, total
        if gating:
            trainable += c * c
            total += c * c

    unit(first_t * 49, cin, STEM)
    unit(1, STEM, CONV2B)
    st_conv(CONV2B, CONV2C)
    gate(CONV2C)
    c = CONV2C
    for _, (b0, b1a, b1b, b2a, b2b, b3) in BLOCKS:
        unit(1, c, b0)
        unit(1, c, b1a)
        st_conv(b1a, b1b)
        unit(1, c, b2a)
        st_conv(b2a, b2b)
        unit(1, c, b3)
        for g in (b0, b1b, b2b, b3):
            gate(g)
        c = b0 + b1b + b2b + b3
    trainable += c * classes + classes
    total += c * classes + classes
    return trainable, total


@pytest.mark.parametrize(
    "name,first_t,separable,gating",
    [("s3dg", 3, True, True), ("s3d", 3, True, False), ("i3d", 7, False, False)],
)
def test_parameter_counts(name, first_t, separable, gating):
    net = models.build_classifier(name, num_classes=400, input_shape=(16, 112, 112, 3))
    trainable = int(sum(np.prod(w.shape) for w in net.trainable_weights))
    want_trainable, want_total = expected_params(first_t, separable, gating)
    assert trainable == want_trainable
    assert net.count_params() == want_total


# --- layer numerics ----------------------------------------------------------------------------


def test_self_gating_matches_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5, 6)).astype("float32")
    layer = L.SelfGating(name="g")
    layer.build(x.shape)
    w = rng.normal(size=(1, 1, 1, 6, 6)).astype("float32")
    layer.transformer_W.assign(w)
    mean = x.mean(axis=(1, 2, 3))  # [B,C]
    gate = 1.0 / (1.0 + np.exp(-(mean @ w[0, 0, 0])))
    want = x * gate[:, None, None, None, :]
    np.testing.assert_allclose(np.asarray(layer(x)), want, rtol=1e-5, atol=1e-6)


def test_gating_is_inside_s3dg_blocks_and_not_in_s3d():
    s3dg = models.build_backbone("s3dg", input_shape=(8, 32, 32, 3), final_endpoint="3B")
    s3d = models.build_backbone("s3d", input_shape=(8, 32, 32, 3), final_endpoint="3B")
    gated = {layer.name for layer in s3dg.layers if isinstance(layer, L.SelfGating)}
    assert gated == {
        "Conv2d_2c_3x3.self_gating",
        "Mixed_3b.Branch_0.Conv2d_0a_1x1.self_gating",
        "Mixed_3b.Branch_1.Conv2d_0b_3x3.self_gating",
        "Mixed_3b.Branch_2.Conv2d_0b_3x3.self_gating",
        "Mixed_3b.Branch_3.Conv2d_0b_1x1.self_gating",
    }
    assert not [layer for layer in s3d.layers if isinstance(layer, L.SelfGating)]


def test_separable_temporal_conv_starts_as_identity():
    inp = keras.Input((5, 6, 6, 4))
    cfg = L.ConvConfig()
    out = L.spatiotemporal_conv(inp, 8, (3, 3, 3), name="X", cfg=cfg, separable=True)
    model = keras.Model(inp, out)
    temporal = model.get_layer("X.temporal")
    kernel = np.asarray(temporal.kernel)
    assert kernel.shape == (3, 1, 1, 8, 8)
    np.testing.assert_array_equal(kernel[1, 0, 0], np.eye(8))
    assert not kernel[0].any() and not kernel[2].any()
    # The whole separable conv equals its spatial part + ReLU at initialization.
    spatial = keras.Model(inp, model.get_layer("X.relu").output)
    x = np.random.default_rng(2).normal(size=(2, 5, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(spatial(x)), atol=1e-6)


# --- TFLite-friendly pooling ------------------------------------------------------------------

POOLS = [  # every pool S3D-G uses: (mode, kernel, stride, padding)
    ("max", (1, 3, 3), (1, 2, 2), "same"),
    ("max", (3, 3, 3), (2, 2, 2), "same"),
    ("max", (2, 2, 2), (2, 2, 2), "same"),
    ("max", (3, 3, 3), (1, 1, 1), "same"),
    ("avg", (2, 7, 7), (1, 1, 1), "valid"),
    ("avg", (2, 4, 4), (1, 1, 1), "valid"),
    ("avg", (3, 3, 3), (2, 2, 2), "same"),
]


@pytest.mark.parametrize("mode,kernel,stride,padding", POOLS)
@pytest.mark.parametrize("shape", [(2, 8, 14, 14, 5), (1, 9, 15, 13, 3), (3, 7, 7, 7, 2)])
def test_pool_as_2d_equals_keras_3d(mode, kernel, stride, padding, shape):
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    ref_cls = keras.layers.MaxPooling3D if mode == "max" else keras.layers.AveragePooling3D
    want = np.asarray(ref_cls(kernel, stride, padding=padding)(x))
    got = np.asarray(L.Pool3DAs2D(kernel, stride, padding=padding, mode=mode)(x))
    assert got.shape == want.shape
    if mode == "max":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_2d_pooling_model_equals_3d_pooling_model():
    a = models.build_classifier("s3dg", num_classes=5, input_shape=(8, 48, 48, 3),
                                depth_multiplier=0.25, pooling="3d")
    b = models.build_classifier("s3dg", num_classes=5, input_shape=(8, 48, 48, 3),
                                depth_multiplier=0.25, pooling="2d")
    informative_weights(a)
    b.set_weights(a.get_weights())
    x = np.random.default_rng(4).uniform(-1, 1, (4, 8, 48, 48, 3)).astype("float32")
    want = np.asarray(a(x))
    assert spread(want) > 0.1, want  # a comparison of outputs that depend on the clip
    np.testing.assert_allclose(np.asarray(b(x)), want, rtol=1e-5, atol=1e-5)


# --- options, aliases and errors --------------------------------------------------------------


def test_aliases_resolve_and_classifier_returns_endpoints():
    assert models.resolve_endpoint("4F") == "Mixed_4f"
    assert models.resolve_endpoint("2c") == "Conv2d_2c_3x3"
    assert models.resolve_endpoint("Mixed_5c") == "Mixed_5c"
    net = models.build_classifier("s3dg", num_classes=3, input_shape=(8, 32, 32, 3),
                                  depth_multiplier=0.25, endpoints=("2C", "Mixed_4f"))
    out = net(np.zeros((1, 8, 32, 32, 3), "float32"))
    assert set(out) == {"logits", "Conv2d_2c_3x3", "Mixed_4f"}
    assert tuple(out["logits"].shape) == (1, 3)
    assert tuple(out["Mixed_4f"].shape) == (1, 2, 2, 2, 208)  # 832 * 0.25


def test_final_endpoint_stops_the_build():
    backbone = models.build_backbone("s3dg", input_shape=(8, 32, 32, 3), final_endpoint="3A")
    assert list(backbone.output) == list(models.VALID_ENDPOINTS[:5])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"final_endpoint": "Mixed_9z"}, "Unknown endpoint"),
        ({"first_temporal_kernel_size": 4}, "1, 3, 5 or 7"),
        ({"depth_multiplier": 0}, "depth_multiplier"),
        ({"gating_startat": "MaxPool_3a_3x3"}, "gating_startat"),
        ({"no_such_option": 1}, "Unknown option"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_backbone("s3dg", input_shape=(8, 32, 32, 3), **kwargs)


def test_bad_preset_and_input_rank():
    with pytest.raises(ValueError, match="Unknown model 'resnet9000'"):
        models.build_backbone("resnet9000", input_shape=(8, 32, 32, 3))
    with pytest.raises(ValueError, match="input_shape"):
        models.build_backbone("s3dg", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="channels"):
        models.build_backbone("s3dg", input_shape=(8, 32, 32, 3), in_channels=2)
    with pytest.raises(ValueError, match="after final_endpoint"):
        models.build_classifier("s3dg", num_classes=2, input_shape=(8, 32, 32, 3),
                                final_endpoint="4F", endpoints=("5C",))


def test_flow_model_builds_and_runs():
    net = models.build_classifier("s3dg", num_classes=4, input_shape=(8, 32, 32, 2),
                                  in_channels=2, depth_multiplier=0.25)
    assert net.get_layer("Conv2d_1a_7x7").kernel.shape == (3, 7, 7, 2, 16)
    out = np.asarray(net(np.zeros((2, 8, 32, 32, 2), "float32")))
    assert out.shape == (2, 4)


def test_depth_multiplier_and_min_depth():
    backbone = models.build_backbone("s3dg", input_shape=(8, 32, 32, 3),
                                     depth_multiplier=0.5, min_depth=16)
    shapes = _shapes(backbone)
    assert shapes["Conv2d_1a_7x7"][-1] == 32
    assert shapes["Conv2d_2c_3x3"][-1] == 96
    # Mixed_3b: 64,128,32,32 halves to 32,64,16,16 (16 -> 8 is raised to min_depth 16).
    assert shapes["Mixed_3b"][-1] == 32 + 64 + 16 + 16
    assert backbone.get_layer("Mixed_3b.Branch_2.Conv2d_0a_1x1").kernel.shape[-1] == 16
    tiny = models.build_backbone("s3dg", input_shape=(8, 32, 32, 3),
                                 depth_multiplier=0.1, min_depth=8)
    assert _shapes(tiny)["Conv2d_1a_7x7"][-1] == 8  # int(6.4) = 6 -> min_depth 8


def test_temporal_conv_startat_controls_temporal_kernels():
    net = models.build_backbone("s3dg", input_shape=(8, 32, 32, 3), final_endpoint="4B",
                                temporal_conv_startat="4B")
    names = {layer.name for layer in net.layers}
    assert "Conv2d_2c_3x3.temporal" not in names
    assert "Mixed_3c.Branch_1.Conv2d_0b_3x3.temporal" not in names
    assert "Mixed_4b.Branch_1.Conv2d_0b_3x3.temporal" in names
    assert net.get_layer("Mixed_3c.Branch_1.Conv2d_0b_3x3").kernel.shape[:3] == (1, 3, 3)
    i3d = models.build_backbone("i3d", input_shape=(8, 32, 32, 3), final_endpoint="3B")
    assert i3d.get_layer("Conv2d_1a_7x7").kernel.shape[:3] == (7, 7, 7)
    assert i3d.get_layer("Mixed_3b.Branch_1.Conv2d_0b_3x3").kernel.shape[:3] == (3, 3, 3)


# --- names --------------------------------------------------------------------------------------


def test_variable_names_follow_slim_scopes():
    net = models.build_classifier("s3dg", num_classes=3, input_shape=(8, 32, 32, 3),
                                  depth_multiplier=0.25)
    names = {naming.slim_name(w.path) for w in net.weights}
    for expected in [
        "InceptionV1/Conv2d_1a_7x7/weights",
        "InceptionV1/Conv2d_1a_7x7/BatchNorm/beta",
        "InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean",
        "InceptionV1/Conv2d_2c_3x3/temporal/biases",
        "InceptionV1/Conv2d_2c_3x3/self_gating/transformer_W/weights",
        "InceptionV1/Mixed_4b/Branch_1/Conv2d_0b_3x3/temporal/weights",
        "InceptionV1/Mixed_3b/Branch_0/Conv2d_0a_1x1/self_gating/transformer_W/weights",
        "InceptionV1/Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance",
        "InceptionV1/Logits/Conv2d_0c_1x1/weights",
        "InceptionV1/Logits/Conv2d_0c_1x1/biases",
    ]:
        assert expected in names
    assert len(names) == len(net.weights)
    for w in net.weights:
        assert naming.keras_path(naming.slim_name(w.path)) == w.path


# --- summary tool -------------------------------------------------------------------------------


def test_summary_table_counts_flops_and_params():
    net = models.build_classifier("s3dg", num_classes=10, input_shape=(8, 32, 32, 3),
                                  depth_multiplier=0.25)
    rows = {r.endpoint: r for r in summary.endpoint_table(net)}
    assert rows["Conv2d_1a_7x7"].output_shape == (4, 16, 16, 16)
    # Stem: 2 * (4*16*16 outputs * 16 channels) * (3*7*7*3) MACs.
    assert rows["Conv2d_1a_7x7"].flops == 2 * 4 * 16 * 16 * 16 * 3 * 7 * 7 * 3
    assert sum(r.params for r in rows.values()) == net.count_params()


@pytest.mark.slow
def test_summary_cli_prints_every_endpoint():
    out = subprocess.run(
        [sys.executable, "-m", "d3d_tf.models.summary", "--model=s3d", "--num_frames=8",
         "--crop_size=64", "--depth_multiplier=0.25", "--num_classes=5"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    for endpoint in models.VALID_ENDPOINTS:
        assert endpoint in out
    assert "total" in out and "GFLOPs" in out


# --- fast implementations equal the plain Keras ones -------------------------------------------


@pytest.mark.parametrize("impl", ["2d", "2d_spatial"])
def test_conv_impl_2d_equals_3d_in_training_and_inference(impl):
    kw = {"num_classes": 5, "input_shape": (8, 40, 40, 3), "depth_multiplier": 0.25}
    a = models.build_classifier("s3dg", conv_impl="3d", **kw)
    b = models.build_classifier("s3dg", conv_impl=impl, **kw)
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    informative_weights(a)
    b.set_weights(a.get_weights())
    x = np.random.default_rng(5).uniform(-1, 1, (4, 8, 40, 40, 3)).astype("float32")
    want = np.asarray(a(x))
    assert spread(want) > 0.1, want
    np.testing.assert_allclose(np.asarray(b(x)), want, rtol=1e-4, atol=1e-4)
    # One training-mode pass updates the BN moving statistics identically.
    a(x, training=True)
    b(x, training=True)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=1e-4, atol=1e-5)


def test_fused_batch_norm_matches_keras_batch_norm():
    x = np.random.default_rng(6).normal(2.0, 3.0, (3, 4, 5, 6, 7)).astype("float32")
    ours = L.BatchNorm(momentum=0.9, epsilon=1e-3, scale=False)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3, scale=False)
    ours.build(x.shape)
    ref.build(x.shape)
    beta = np.linspace(-1, 1, 7).astype("float32")
    ours.beta.assign(beta)
    ref.beta.assign(beta)
    np.testing.assert_allclose(np.asarray(ours(x, training=True)),
                               np.asarray(ref(x, training=True)), rtol=1e-4, atol=1e-4)
    n = 3 * 4 * 5 * 6  # the fused kernel's moving variance is Bessel-corrected
    np.testing.assert_allclose(np.asarray(ours.moving_mean), np.asarray(ref.moving_mean),
                               rtol=1e-5, atol=1e-6)
    var_ref = 0.9 + 0.1 * x.reshape(-1, 7).var(axis=0) * n / (n - 1)
    np.testing.assert_allclose(np.asarray(ours.moving_variance), var_ref, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(ours(x, training=False)),
                               (x - np.asarray(ours.moving_mean))
                               / np.sqrt(np.asarray(ours.moving_variance) + 1e-3) + beta,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frames", [7, 8, 9])
@pytest.mark.parametrize(
    "kernel,strides,padding",
    [((3, 7, 7), (2, 2, 2), "same"), ((7, 7, 7), (2, 2, 2), "same"),
     ((3, 3, 3), (1, 1, 1), "same"), ((3, 7, 7), (2, 2, 2), "valid"),
     ((1, 3, 3), (1, 2, 2), "same"), ((3, 1, 1), (2, 1, 1), "same"),
     # the view of the clip longer than the clip (padded) and shorter (cropped)
     ((1, 3, 3), (2, 2, 2), "same"), ((2, 3, 3), (3, 1, 1), "valid")],
)
@pytest.mark.parametrize("impl", ["2d_all", "2d_spatial"])
def test_conv3d_as_2d_equals_conv3d(frames, kernel, strides, padding, impl):
    """Every lowering (per-frame, temporal, sum over shifted frames) equals tf.nn.conv3d."""
    x = np.random.default_rng(7).normal(size=(2, frames, 20, 21, 3)).astype("float32")
    ref = L.Conv3D(5, kernel, strides=strides, padding=padding, impl="3d")
    low = L.Conv3D(5, kernel, strides=strides, padding=padding, impl=impl)
    ref.build(x.shape)
    low.build(x.shape)
    ref.set_weights([ref.get_weights()[0], np.arange(5, dtype="float32") - 2.0])  # nonzero bias
    low.set_weights(ref.get_weights())
    want, got = np.asarray(ref(x)), np.asarray(low(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl, spatial_op, temporal_op", [
    ("2d", "Conv2D", "Conv2D"), ("2d_spatial", "Conv2D", "Conv3D"), ("3d", "Conv3D", "Conv3D")])
def test_each_lowering_runs_the_ops_it_names(impl, spatial_op, temporal_op):
    """`2d` lowers [1,k,k] and [t,1,1] convs to Conv2D, `2d_spatial` only the [1,k,k] ones
    (the temporal conv stays Conv3D, faster to train with AVX2 kernels), `3d` neither."""
    import tensorflow as tf

    def conv_ops(kernel):
        layer = L.Conv3D(4, kernel, padding="same", impl=impl)
        graph = tf.function(layer).get_concrete_function(
            tf.TensorSpec((1, 4, 8, 8, 3), tf.float32)).graph
        return {op.type for op in graph.get_operations() if op.type.startswith("Conv")}

    assert conv_ops((1, 3, 3)) == {spatial_op}
    assert conv_ops((3, 1, 1)) == {temporal_op}


@pytest.mark.parametrize("frames", [7, 8, 11])
@pytest.mark.parametrize("kt,stride,padding", [
    (7, 2, "valid"), (7, 2, "same"), (3, 2, "same"), (3, 3, "same"), (2, 2, "valid"),
    (4, 3, "same")])
def test_strided_temporal_conv_has_the_gradients_of_conv3d(frames, kt, stride, padding):
    """Under `2d_spatial` a strided [kt,1,1] conv computes its kernel gradient as matrix
    products: the same output, input gradient and kernel gradient as conv3d in float64 (SAME's
    front padding, VALID's dropped frames), and no Conv3DBackpropFilter op in the graph."""
    import tensorflow as tf

    rng = np.random.default_rng(11)
    x = tf.constant(rng.normal(size=(2, frames, 5, 6, 4)), tf.float32)
    layers = {impl: L.Conv3D(3, (kt, 1, 1), strides=(stride, 1, 1), padding=padding, impl=impl)
              for impl in ("3d", "2d_spatial")}
    for layer in layers.values():
        layer.build(x.shape)
    layers["3d"].set_weights([rng.normal(size=(kt, 1, 1, 4, 3)).astype("float32"),
                              np.arange(3, dtype="float32")])
    layers["2d_spatial"].set_weights(layers["3d"].get_weights())
    dy = tf.constant(rng.normal(size=np.asarray(layers["3d"](x)).shape), tf.float32)

    def forward_and_grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        dx, dk, db = tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=dy)
        return [np.asarray(t) for t in (y, dx, dk, db)]

    def reference():
        # conv3d in float64 (TensorFlow's Eigen kernels): oneDNN's float32 Conv3DBackpropFilter
        # returned wrong kernel gradients (entries of 1e15 and more) for kt=7, stride 2, SAME,
        # 7 frames on an AMX Xeon with TensorFlow 2.21, so it cannot be the reference.
        x64, dy64 = tf.cast(x, tf.float64), tf.cast(dy, tf.float64)
        k, b = (tf.Variable(np.asarray(w, np.float64)) for w in layers["3d"].get_weights())
        with tf.GradientTape() as tape:
            tape.watch(x64)
            y = tf.nn.conv3d(x64, k, strides=(1, stride, 1, 1, 1), padding=padding.upper()) + b
        dx, dk, db = tape.gradient(y, [x64, k, b], output_gradients=dy64)
        return [np.asarray(t) for t in (y, dx, dk, db)]

    want = reference()
    assert np.abs(want[2]).max() > 1.0  # a kernel gradient worth comparing
    np.testing.assert_allclose(np.asarray(layers["3d"](x)), want[0], rtol=1e-4, atol=1e-4)
    for got, ref in zip(forward_and_grads(layers["2d_spatial"]), want):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)

    def graph_ops(layer):
        @tf.function
        def kernel_grad(x):
            with tf.GradientTape() as tape:
                y = layer(x)
            return tape.gradient(y, layer.kernel, output_gradients=dy)

        return {op.type for op in kernel_grad.get_concrete_function(x).graph.get_operations()}

    assert "Conv3DBackpropFilterV2" in graph_ops(layers["3d"])
    ours = graph_ops(layers["2d_spatial"])
    assert {"Conv3D", "MatMul"} <= ours and "Conv3DBackpropFilterV2" not in ours


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv3d_on_few_channels_is_padded_and_exact(channels, padding):
    """A full 3D kernel on 1-2 channels (the flow stem) runs on zero-padded channels (Eigen's
    conv3d backward pass is ~100x slower there) with the output and kernel gradient of conv3d."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(8).normal(size=(2, 9, 20, 21, channels)), tf.float32)
    ref = L.Conv3D(4, (7, 7, 7), strides=(2, 2, 2), padding=padding, impl="3d")
    ours = L.Conv3D(4, (7, 7, 7), strides=(2, 2, 2), padding=padding, impl="2d")
    ref.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(ref.get_weights())
    outputs, grads = [], []
    for layer in (ref, ours):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        outputs.append(np.asarray(y))
        grads.append(tape.gradient(loss, layer.kernel))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)
    assert grads[1].shape == (7, 7, 7, channels, 4)
    scale = float(np.abs(grads[0]).max())
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(grads[0]), rtol=1e-4,
                               atol=1e-5 * scale)
    # The graph's Conv3D sees 3 input channels.
    graph = tf.function(ours).get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
    convs = [op for op in graph.get_operations() if op.type == "Conv3D"]
    assert [op.inputs[0].shape[-1] for op in convs] == [L.MIN_CONV3D_CHANNELS]


def _pythons_without_onednn_flag(code, *envs):
    """`python -c code` once per dict of `envs`, side by side, with TF_ENABLE_ONEDNN_OPTS
    unset unless an env gives it; their CompletedProcess in the order of `envs`."""
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    done = run_side_by_side([[sys.executable, "-c", code]] * len(envs),
                            envs=[{**base, **env} for env in envs])
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return done


def test_importing_d3d_tf_turns_onednn_on_unless_told_otherwise():
    code = ("import d3d_tf, tensorflow; from tensorflow.python.util import _pywrap_util_port "
            "as p; print('ONEDNN', p.IsMklEnabled())")
    on, off = _pythons_without_onednn_flag(code, {}, {"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert "ONEDNN False" in off.stdout
    if platform.machine() in ("x86_64", "AMD64"):  # oneDNN kernels are built for x86 only
        assert "ONEDNN True" in on.stdout


def test_onednn_off_warning_only_for_tensorflow_first_without_onednn_on_x86():
    assert "import d3d_tf before tensorflow" in d3d_tf.onednn_off_warning(True, False, "x86_64")
    assert d3d_tf.onednn_off_warning(True, True, "x86_64") is None
    assert d3d_tf.onednn_off_warning(False, False, "x86_64") is None
    assert d3d_tf.onednn_off_warning(True, False, "aarch64") is None


def test_importing_tensorflow_first_warns_exactly_when_onednn_stayed_off():
    code = ("import tensorflow; from tensorflow.python.util import _pywrap_util_port as p; "
            "print('ONEDNN', p.IsMklEnabled()); import d3d_tf")
    run, explicit = _pythons_without_onednn_flag(code, {}, {"TF_ENABLE_ONEDNN_OPTS": "0"})
    off = "ONEDNN False" in run.stdout
    warned = "RuntimeWarning: TensorFlow was imported before d3d_tf" in run.stderr
    assert warned == (off and platform.machine() in ("x86_64", "AMD64"))
    # An explicit choice is the user's: no warning.
    assert "RuntimeWarning" not in explicit.stderr


def test_builders_take_the_channels_from_the_input_shape():
    from d3d_tf.models.video_model import VideoModel

    flow = models.build_classifier("s3dg", num_classes=3, input_shape=(4, 32, 32, 2),
                                   depth_multiplier=0.1, final_endpoint="Mixed_3b")
    assert isinstance(flow, VideoModel)  # the config is part of the model class
    assert flow.d3d_config.in_channels == 2 and flow.inputs[0].shape[-1] == 2
    backbone = models.build_backbone("i3d", input_shape=(4, 32, 32, 2), depth_multiplier=0.1,
                                     final_endpoint="Conv2d_2b_1x1")
    assert backbone.d3d_config.in_channels == 2
    with pytest.raises(ValueError, match="2 channels but in_channels=3"):
        models.build_classifier("s3dg", num_classes=3, input_shape=(4, 32, 32, 2),
                                in_channels=3, depth_multiplier=0.1)
