"""Building blocks of the S3D-G family: unit conv, separable conv, self-gating, 3D pooling.

All tensors are NDHWC: `[batch, time, height, width, channels]`.

Layer names follow the TF-Slim S3D-G scopes with `.` standing in for `/` (Keras 3 forbids `/`
in layer names): the slim scope `Mixed_4b/Branch_1/Conv2d_0b_3x3/temporal` is the Keras layer
`Mixed_4b.Branch_1.Conv2d_0b_3x3.temporal`. `d3d_tf.models.naming` holds the one mapping
between the two.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from d3d_tf.models import cpu_choices

POOLING_MODES = ("3d", "2d")
# `auto` is resolved per CPU when a layer is built (d3d_tf.models.cpu_choices).
CONV_IMPLS = ("auto", *cpu_choices.CONV_IMPLS)


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """Hyper-parameters shared by every conv of a network (the slim `s3dg_arg_scope`).

    weight_decay: slim's `l2_regularizer(weight_decay)` adds `weight_decay * sum(w**2) / 2`;
      Keras' `L2(l)` adds `l * sum(w**2)`, so kernels get `L2(weight_decay / 2)`.
    batch_norm_scale: give batch norm a learned gamma (slim has none; torchvision has one).
    temporal_batch_norm: the `[t,1,1]` conv of a separable conv is followed by batch norm (and
      then has no bias), as in torchvision's S3D; slim uses a bias and no batch norm.
    padding: `same` (TF `SAME`, slim) or `symmetric` (PyTorch: `(k-1)//2` on both sides of
      every axis, then `VALID`; max pools pad with -inf). The two differ only for strided or
      even kernels, so `symmetric` uses `SAME` where they agree.
    """

    batch_norm_decay: float = 0.999
    batch_norm_epsilon: float = 1e-3
    weight_decay: float = 1e-7
    sync_batch_norm: bool = False
    pooling: str = "3d"
    conv_impl: str = "auto"
    batch_norm_scale: bool = False
    temporal_batch_norm: bool = False
    padding: str = "same"


def _regularizer(cfg: ConvConfig):
    return keras.regularizers.L2(cfg.weight_decay / 2.0) if cfg.weight_decay > 0 else None


def _kernel_init():
    return keras.initializers.TruncatedNormal(stddev=0.01)


@keras.saving.register_keras_serializable(package="d3d_tf")
class Conv3D(keras.layers.Conv3D):
    """`keras.layers.Conv3D` (same variables: kernel `[kt,kh,kw,Cin,Cout]`, bias) that can run
    as 2D convolutions.

    With `impl="2d"` a `[1,kh,kw]` conv with temporal stride 1 runs as a `CONV_2D` over
    `[B*T,H,W,C]`, and a `[kt,1,1]` conv with spatial stride 1 as a `(kt,1)` `CONV_2D` over
    `[B,T,H*W,C]` — the same result (SAME padding is per axis), and TFLite builtins that
    XNNPACK accelerates and int8 quantizes (speed per CPU: docs/performance.md). A full
    `[kt,kh,kw]` kernel (the stem, I3D) stays `conv3d` (faster on CPU), unless
    `impl="2d_all"`: then it is a sum of `kt` 2D convs over temporally shifted frames (needs a
    static T), so that a TFLite model has no `CONV_3D` at all. `impl="2d_spatial"` lowers only
    the `[1,kh,kw]` convs and keeps `conv3d` for the rest (faster to train with AVX2 kernels);
    there a `[kt,1,1]` conv with temporal stride > 1 gets its kernel gradient from matrix
    products (`_temporal_conv3d_matmul_grad`: oneDNN's AVX2 kernel gradient is slow there).
    `impl="3d"` always uses `conv3d`.
    `impl="auto"` (the default) is `2d` or `2d_spatial`, whichever this CPU runs faster
    (`cpu_choices.resolve_conv_impl`); `get_config` keeps `auto`, so a saved model re-resolves
    on the machine that loads it.
    A full kernel on 1 or 2 input channels (the flow stem) gets zero channels up to 3 first:
    see `MIN_CONV3D_CHANNELS`.
    """

    def __init__(self, *args, impl: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if impl not in CONV_IMPLS:
            raise ValueError(f"impl must be one of {CONV_IMPLS}, got {impl!r}")
        self.impl = impl
        self.resolved_impl = cpu_choices.resolve_conv_impl(impl)

    def call(self, x):
        kt, kh, kw = self.kernel_size
        st, sh, sw = self.strides
        if self.resolved_impl == "3d" or self.dilation_rate != (1, 1, 1):
            return super().call(x)
        bias = ops.cast(self.bias, x.dtype) if self.use_bias else None
        if kt == 1 and st == 1:
            y = _conv2d_frames(x, self.kernel[0], (sh, sw), self.padding, bias)
        elif kh == kw == sh == sw == 1 and self.resolved_impl != "2d_spatial":
            y = _conv2d_time(x, self.kernel[:, 0], (st, 1), self.padding, bias)
        elif kh == kw == sh == sw == 1 and st > 1 and None not in x.shape[1:]:
            y = _temporal_conv3d_matmul_grad(x, ops.cast(self.kernel, x.dtype), st, self.padding)
            y = y if bias is None else y + bias
        elif self.resolved_impl == "2d_all" and x.shape[1] is not None:
            y = _conv3d_as_2d_sum(x, self.kernel, self.strides, self.padding, bias)
        elif x.shape[-1] is not None and x.shape[-1] < MIN_CONV3D_CHANNELS:
            y = _conv3d_padded_channels(x, self.kernel, self.strides, self.padding)
            y = y if bias is None else y + bias
        else:
            return super().call(x)
        return self.activation(y) if self.activation is not None else y

    def get_config(self):
        return {**super().get_config(), "impl": self.impl}


def _dims(x):
    """Static dims where known, dynamic otherwise, of a `[B,T,H,W,C]` tensor."""
    shape = ops.shape(x)
    return [x.shape[i] if x.shape[i] is not None else shape[i] for i in range(5)]


# The bias is added before the reshape back to 5D: TFLite then fuses it into the CONV_2D, where
# after the reshape it stayed a separate ADD per conv (the same numbers either way).
def _conv2d_frames(x, kernel, strides, padding, bias=None):
    """Per-frame 2D conv: `[B,T,H,W,C]` as `[B*T,H,W,C]`, plus `bias` `[C']` if given."""
    _, t, h, w, c = _dims(x)
    y = ops.conv(ops.reshape(x, (-1, h, w, c)), ops.cast(kernel, x.dtype), strides, padding)
    if bias is not None:
        y = y + bias
    _, h2, w2, c2 = _dims4(y)
    return ops.reshape(y, (-1, t, h2, w2, c2))


def _conv2d_time(x, kernel, strides, padding, bias=None):
    """Temporal conv `[kt,1,1]`: `[B,T,H,W,C]` as `[B,T,H*W,C]` with a `(kt,1)` kernel, plus
    `bias` `[C']` if given."""
    _, t, h, w, c = _dims(x)
    y = ops.conv(ops.reshape(x, (-1, t, h * w, c)), ops.cast(kernel, x.dtype), strides, padding)
    if bias is not None:
        y = y + bias
    _, t2, _, c2 = _dims4(y)
    return ops.reshape(y, (-1, t2, h, w, c2))


def _temporal_conv3d_matmul_grad(x, kernel, stride, padding):
    """`conv3d` of `[B,T,H,W,C]` (static T) with a `[kt,1,1,C,C']` kernel and temporal stride
    `stride`, whose kernel gradient is `kt` matrix products `frames(dt)^T . dy` over
    `[B*T'*H*W, C]`.

    oneDNN's AVX2 conv3d kernel gradient is far slower than these products for strided temporal
    convs such as the `[7,1,1]` stride-2 stem of torchvision's S3D (docs/performance.md has the
    figures). The forward pass and the input gradient stay oneDNN's.
    """
    import tensorflow as tf  # the gradient needs TF's own ops; Keras runs on TF here

    strides = (1, stride, 1, 1, 1)

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv3d(x, kernel, strides, padding.upper())

        def grad(dy):
            dx = tf.raw_ops.Conv3DBackpropInputV2(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=strides,
                padding=padding.upper())
            cin, cout = kernel.shape[3], kernel.shape[4]
            flat_dy = tf.reshape(dy, (-1, cout))
            dk = [tf.matmul(tf.reshape(f, (-1, cin)), flat_dy, transpose_a=True)
                  for f in _shifted_frames(x, kernel.shape[0], stride, padding)]
            return dx, tf.reshape(tf.stack(dk), kernel.shape)

        return y, grad

    return conv(x, kernel)


# TensorFlow's Eigen conv3d (what TF runs when oneDNN is off) has a far slower backward pass for
# 1 or 2 input channels than for 3 (docs/performance.md has the figures). Zero channels bring
# the input to 3: the same output and the same gradient for the real kernel.
MIN_CONV3D_CHANNELS = 3


def _conv3d_padded_channels(x, kernel, strides, padding):
    """`conv3d` of a `[B,T,H,W,C<3]` input with zero channels (and zero kernel rows) added."""
    extra = MIN_CONV3D_CHANNELS - x.shape[-1]
    # Concatenated zeros, not a Pad op: grappler's oneDNN remapper fuses Pad into the conv as
    # spatial padding and drops the channel padding ("input and filter must have the same
    # depth: 2 vs 3" at run time).
    x = ops.concatenate([x] + [ops.zeros_like(x[..., :1])] * extra, axis=-1)
    kernel = ops.cast(kernel, x.dtype)
    kernel = ops.concatenate([kernel] + [ops.zeros_like(kernel[:, :, :, :1])] * extra, axis=3)
    return ops.conv(x, kernel, strides, padding)


def _conv3d_as_2d_sum(x, kernel, strides, padding, bias=None):
    """Full 3D conv as `sum_dt conv2d(frames[st*t' + dt], kernel[dt])` with TF padding rules,
    computed as one 2D conv over the `kt` frame sets stacked on the channel axis."""
    kt, c = kernel.shape[0], kernel.shape[3]
    frames = _shifted_frames(x, kt, strides[0], padding)
    # One conv over the kt frame sets stacked on channels: [kh,kw,kt*C,O], channel dt*C + c.
    kh, kw, cout = kernel.shape[1], kernel.shape[2], kernel.shape[4]
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 0, 3, 4)), (kh, kw, kt * c, cout))
    return _conv2d_frames(ops.concatenate(frames, axis=-1), stacked, strides[1:], padding, bias)


def _shifted_frames(x, kt, st, padding):
    """The `kt` frame sets a `[kt,..]` kernel with temporal stride `st` reads from `[B,T,H,W,C]`
    (static T) under TF padding rules: set `dt` is `[B,T',H,W,C]`, frames `st*t' + dt` of the
    padded clip.

    The frames of each `dt` are a stride-1 slice of a `[B, L/st, st, H*W*C]` view of the
    (padded) clip, not a strided slice of time: TFLite runs a strided `STRIDED_SLICE` of a 5D
    tensor outside XNNPACK, and that took longer than the stem's convs (docs/export.md); TF's
    own strided slice of time is slow on CPU too.
    """
    _, t, h, w, c = _dims(x)
    if padding == "same":
        t_out = -(-t // st)
        front = max((t_out - 1) * st + kt - t, 0) // 2
    else:
        t_out = (t - kt) // st + 1
        front = 0
    # The view holds frames 0 .. L-1 of the padded clip; the last one read is st*(t_out-1)+kt-1.
    length = st * (t_out + (kt - 1) // st)
    back = length - t - front
    if front or back > 0:
        x = ops.pad(x, ((0, 0), (front, max(back, 0)), (0, 0), (0, 0), (0, 0)))
    if back < 0:
        x = ops.slice(x, (0, 0, 0, 0, 0), (-1, length, h, w, c))
    view = ops.reshape(x, (-1, length // st, st, h * w * c))
    return [ops.reshape(ops.slice(view, (0, dt // st, dt % st, 0), (-1, t_out, 1, h * w * c)),
                        (-1, t_out, h, w, c)) for dt in range(kt)]


def _dims4(y):
    shape = ops.shape(y)
    return [y.shape[i] if y.shape[i] is not None else shape[i] for i in range(4)]


@keras.saving.register_keras_serializable(package="d3d_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` (same variables) computed with TF's fused kernel.

    Keras 3 normalizes 5D tensors with separate mean / variance / scale ops; TF's
    `FusedBatchNormV3` over `[B*T,H,W,C]` does the same in one pass (much faster when training
    on CPU: docs/performance.md). The moving averages follow Keras: `m = m * momentum + batch *
    (1 - momentum)`, with the fused kernel's batch variance (Bessel-corrected, as TF's own Keras 2
    BN did). Synchronized BN, masks and non-last axes fall back to the Keras implementation.
    """

    def call(self, inputs, training=None, mask=None):
        import tensorflow as tf

        if (
            self.synchronized
            or mask is not None
            or len(inputs.shape) != 5
            or self.axis not in (-1, 4)
        ):
            return super().call(inputs, training=training, mask=mask)
        training = bool(training) and self.trainable
        c = inputs.shape[-1]
        shape = ops.shape(inputs)
        x = ops.reshape(inputs, (-1, *[inputs.shape[i] or shape[i] for i in (-3, -2)], c))
        scale = self.gamma if self.scale else tf.ones([c], "float32")
        offset = self.beta if self.center else tf.zeros([c], "float32")
        if training:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=self.epsilon, is_training=True
            )[:3]
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, self.moving_mean, self.moving_variance,
                epsilon=self.epsilon, is_training=False,
            )[0]
        return ops.reshape(y, shape)


PADDINGS = ("same", "symmetric")


@keras.saving.register_keras_serializable(package="d3d_tf")
class ConstantPad3D(keras.layers.Layer):
    """Pads the T, H, W axes of `[B,T,H,W,C]` by `pads` = `((t0,t1),(h0,h1),(w0,w1))` with `value`.

    `value=-inf` before a max pool reproduces PyTorch's implicitly padded max pooling.
    """

    def __init__(self, pads, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.pads = tuple(tuple(int(v) for v in p) for p in pads)
        self.value = float(value)

    def call(self, x):
        return ops.pad(x, ((0, 0), *self.pads, (0, 0)), constant_values=self.value)

    def compute_output_shape(self, input_shape):
        b, *spatial, c = input_shape
        out = [None if n is None else n + p0 + p1 for n, (p0, p1) in zip(spatial, self.pads)]
        return (b, *out, c)

    def get_config(self):
        return {**super().get_config(), "pads": self.pads, "value": self.value}


def _explicit_pads(kernel_size, strides, cfg: ConvConfig):
    """`((p,p),..)` when `cfg.padding` is `symmetric` and differs from TF `SAME`, else None.

    With stride 1 and an odd kernel, `SAME` pads `(k-1)//2` on both sides: the same thing.
    """
    if cfg.padding == "same":
        return None
    if cfg.padding != "symmetric":
        raise ValueError(f"padding must be one of {PADDINGS}, got {cfg.padding!r}")
    kernel, stride = _triple(kernel_size), _triple(strides)
    if all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride)):
        return None
    return tuple(((k - 1) // 2, (k - 1) // 2) for k in kernel)


def _conv3d(x, filters, kernel_size, *, strides, use_bias, kernel_initializer, name, cfg):
    """Conv3D with `cfg.padding`; an explicit pad layer is named `<name>.pad`."""
    pads = _explicit_pads(kernel_size, strides, cfg)
    if pads is not None:
        x = ConstantPad3D(pads, name=f"{name}.pad")(x)
    return Conv3D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if pads is None else "valid",
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=_regularizer(cfg),
        impl=cfg.conv_impl,
        name=name,
    )(x)


def _batch_norm(x, *, name: str, cfg: ConvConfig):
    return BatchNorm(
        momentum=cfg.batch_norm_decay,
        epsilon=cfg.batch_norm_epsilon,
        scale=cfg.batch_norm_scale,
        synchronized=cfg.sync_batch_norm,
        name=name,
    )(x)


def unit_conv(x, filters: int, kernel_size, *, name: str, cfg: ConvConfig, strides=1):
    """Conv3D without bias -> batch norm (no gamma unless `cfg.batch_norm_scale`) -> ReLU.

    Args:
      x: `[B,T,H,W,C]` float tensor.
      kernel_size, strides: ints or `(t, h, w)` triples; padding per `cfg.padding` (default TF
        `SAME`).
    Returns: `[B,T',H',W',filters]`.
    """
    x = _conv3d(
        x,
        filters,
        kernel_size,
        strides=strides,
        use_bias=False,
        kernel_initializer=_kernel_init(),
        name=name,
        cfg=cfg,
    )
    x = _batch_norm(x, name=f"{name}.BatchNorm", cfg=cfg)
    return keras.layers.ReLU(name=f"{name}.relu")(x)


class CenterIdentity(keras.initializers.Initializer):
    """Initializer of a `[t,1,1,C,C]` temporal kernel: identity at the temporal center.

    A separable conv therefore starts as its spatial part alone (slim's `center_initializer`),
    which matters for training separable 3D nets from scratch.
    """

    def __call__(self, shape, dtype=None):
        t, h, w, cin, cout = shape
        if h != 1 or w != 1 or cin != cout or t % 2 == 0:
            raise ValueError(f"CenterIdentity needs a [odd t,1,1,C,C] kernel, got {shape}")
        value = np.zeros(shape, dtype="float32")
        value[t // 2, 0, 0] = np.eye(cin, dtype="float32")
        return ops.convert_to_tensor(value, dtype=dtype or "float32")


def spatiotemporal_conv(
    x, filters: int, kernel_size, *, name: str, cfg: ConvConfig, separable: bool, strides=1
):
    """Slim's `conv3d_spatiotemporal`.

    Separable with a temporal kernel t > 1: a `[1,k,k]` unit conv (BN, ReLU), then a `[t,1,1]`
    conv named `<name>.temporal` **with bias, ReLU and no BN**, initialized to the identity
    (with `cfg.temporal_batch_norm`: no bias, then BN `<name>.temporal.BatchNorm`, then ReLU).
    Otherwise a single full `[t,k,k]` unit conv.
    """
    t, kh, kw = kernel_size
    if not separable or t == 1:
        return unit_conv(x, filters, kernel_size, name=name, cfg=cfg, strides=strides)
    st, sh, sw = strides if isinstance(strides, (tuple, list)) else (strides,) * 3
    x = unit_conv(x, filters, (1, kh, kw), name=name, cfg=cfg, strides=(1, sh, sw))
    x = _conv3d(
        x,
        filters,
        (t, 1, 1),
        strides=(st, 1, 1),
        use_bias=not cfg.temporal_batch_norm,
        kernel_initializer=CenterIdentity(),
        name=f"{name}.temporal",
        cfg=cfg,
    )
    if cfg.temporal_batch_norm:
        x = _batch_norm(x, name=f"{name}.temporal.BatchNorm", cfg=cfg)
    return keras.layers.ReLU(name=f"{name}.temporal.relu")(x)


@keras.saving.register_keras_serializable(package="d3d_tf")
class SelfGating(keras.layers.Layer):
    """S3D-G feature gating: `y = x * sigmoid(W . mean_{T,H,W}(x))`.

    `W` is a bias-free 1x1x1 conv C->C, stored as `transformer_W` with slim's shape
    `[1,1,1,C,C]`. Input and output: `[B,T,H,W,C]`.
    """

    def __init__(self, weight_decay: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.weight_decay = weight_decay

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.transformer_W = self.add_weight(
            name="transformer_W",
            shape=(1, 1, 1, channels, channels),
            initializer=_kernel_init(),
            regularizer=keras.regularizers.L2(self.weight_decay / 2.0)
            if self.weight_decay > 0
            else None,
        )

    def call(self, x):
        context = ops.mean(x, axis=(1, 2, 3))  # [B,C]
        gate = ops.sigmoid(ops.matmul(context, self.transformer_W[0, 0, 0]))
        # A reshape, not gate[:, None, None, None, :], which TFLite keeps as a STRIDED_SLICE.
        return x * ops.reshape(gate, (-1, 1, 1, 1, gate.shape[-1]))

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


def self_gating(x, *, name: str, cfg: ConvConfig):
    """Applies `SelfGating` named `<name>.self_gating` (slim: `<name>/self_gating/...`)."""
    return SelfGating(weight_decay=cfg.weight_decay, name=f"{name}.self_gating")(x)


def _triple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _pool2d_padding(padding: str) -> str:
    padding = padding.lower()
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    return padding


@keras.saving.register_keras_serializable(package="d3d_tf")
class Pool3DAs2D(keras.layers.Layer):
    """3D max / average pooling computed as two 2D pools (TFLite has no 3D pooling op).

    A `[kt,kh,kw]` pool with strides `[st,sh,sw]` over `[B,T,H,W,C]` equals a `(kh,kw)` 2D pool
    over `[B*T,H,W,C]` followed by a `(kt,1)` 2D pool over `[B,T,H'*W',C]`. Max is exactly
    separable; so is average, because TF's SAME average divides by the count of valid
    (unpadded) positions, which is a product over the three axes.
    """

    def __init__(self, pool_size, strides=None, padding="valid", mode="max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
        self.pool_size = _triple(pool_size)
        self.strides = _triple(strides if strides is not None else pool_size)
        self.padding = _pool2d_padding(padding)
        self.mode = mode
        pool2d = keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D
        kt, kh, kw = self.pool_size
        st, sh, sw = self.strides
        self._spatial = pool2d((kh, kw), (sh, sw), padding=self.padding, name="spatial")
        self._temporal = pool2d((kt, 1), (st, 1), padding=self.padding, name="temporal")

    def call(self, x):
        shape = ops.shape(x)
        t, h, w, c = (x.shape[i] if x.shape[i] is not None else shape[i] for i in range(1, 5))
        y = ops.reshape(x, (-1, h, w, c))
        if self.pool_size[1:] != (1, 1) or self.strides[1:] != (1, 1):
            y = self._spatial(y)
        h2, w2 = (y.shape[i] if y.shape[i] is not None else ops.shape(y)[i] for i in (1, 2))
        y = ops.reshape(y, (-1, t, h2 * w2, c))
        if self.pool_size[0] != 1 or self.strides[0] != 1:
            y = self._temporal(y)
        t2 = y.shape[1] if y.shape[1] is not None else ops.shape(y)[1]
        return ops.reshape(y, (-1, t2, h2, w2, c))

    def compute_output_shape(self, input_shape):
        def out(n, k, s):
            if n is None:
                return None
            return -(-n // s) if self.padding == "same" else (n - k) // s + 1

        b, t, h, w, c = input_shape
        k, s = self.pool_size, self.strides
        return (b, out(t, k[0], s[0]), out(h, k[1], s[1]), out(w, k[2], s[2]), c)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "mode": self.mode,
        }


def _pool_as_2d(cfg: ConvConfig) -> bool:
    """The 2D form for `cfg.pooling == "2d"`, and for float16 compute on a machine without GPU:
    TensorFlow's CPU kernels of the 3D pools have no float16 (the 2D ones have; same numbers)."""
    if cfg.pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {POOLING_MODES}, got {cfg.pooling!r}")
    return cfg.pooling == "2d" or (
        keras.mixed_precision.global_policy().compute_dtype == "float16"
        and not cpu_choices.has_gpu(cpu_choices.local_devices()))


def max_pool3d(x, pool_size, strides, *, name: str, cfg: ConvConfig, padding="same"):
    """Max pool with TF `SAME`/`VALID` semantics; `cfg.pooling` picks 3D ops or the 2D form.

    With `cfg.padding == "symmetric"` a `SAME` pool becomes PyTorch's: pad `(k-1)//2` with
    -inf on both sides (layer `<name>.pad`), then `VALID`.
    """
    pads = _explicit_pads(pool_size, strides, cfg) if padding == "same" else None
    if pads is not None:
        x = ConstantPad3D(pads, value=float("-inf"), name=f"{name}.pad")(x)
        padding = "valid"
    if _pool_as_2d(cfg):
        return Pool3DAs2D(pool_size, strides, padding=padding, mode="max", name=name)(x)
    return keras.layers.MaxPooling3D(pool_size, strides, padding=padding, name=name)(x)


def avg_pool3d(x, pool_size, strides, *, name: str, cfg: ConvConfig, padding="valid"):
    """Average pool; `cfg.pooling` picks 3D ops or the TFLite-friendly 2D form."""
    if _pool_as_2d(cfg):
        return Pool3DAs2D(pool_size, strides, padding=padding, mode="avg", name=name)(x)
    return keras.layers.AveragePooling3D(pool_size, strides, padding=padding, name=name)(x)


@keras.saving.register_keras_serializable(package="d3d_tf")
class SpatioTemporalMean(keras.layers.Layer):
    """Mean over the T, H, W axes of `[B,T,H,W,C]`: `[B,C]`, or `[B,1,1,1,C]` with keepdims."""

    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = keepdims

    def call(self, x):
        return ops.mean(x, axis=(1, 2, 3), keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        b, c = input_shape[0], input_shape[-1]
        return (b, 1, 1, 1, c) if self.keepdims else (b, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}
