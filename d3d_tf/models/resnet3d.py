"""Res3D-18 and R(2+1)D-18 (Tran et al. 2018), the DistInit students, as Keras 3 models.

The layer structure is torchvision's `r3d_18` / `r2plus1d_18` (`torchvision/models/video/
resnet.py`), so that its Kinetics-400 weights import one to one (`d3d_tf.weights.torch_resnet3d`):

    conv1     stem: [3,7,7] conv stride (1,2,2), BN, ReLU (R3D); or [1,7,7] conv to 45 channels,
              BN, ReLU, [3,1,1] conv to 64, BN, ReLU (R(2+1)D). No max pool.
    layer1-4  two BasicBlocks each, 64 / 128 / 256 / 512 channels; layers 2-4 start with stride
              2 in T, H and W and a 1x1x1 strided projection (`downsample`) on the shortcut.
    pooled    mean over T, H, W: `[B,512]`.
    Logits    (dropout) then a dense layer `Logits.fc` to the classes.

A block conv is a full [3,3,3] conv (R3D) or a (2+1)D conv: [1,3,3] to M channels, BN, ReLU,
then [3,1,1] to the output, with M = floor(27 N_in N_out / (9 N_in + 3 N_out)) computed from the
*block's* input and output widths (torchvision uses that M for both convs of a block). Batch norm
has a gamma and eps 1e-5; padding is PyTorch's symmetric `(k-1)//2`.

Layer names follow the torchvision modules with the S3D-G conventions of `layers.py`:
`layer2.0.conv1` (the [3,3,3] conv, or the [1,3,3] part), `layer2.0.conv1.temporal` (the
[3,1,1] part), `<conv>.BatchNorm`, `layer2.0.downsample`. Input `[B,T,H,W,C]`, C = 3 (RGB) or
2 (flow).

    net = build_classifier("r2plus1d_18", num_classes=51, input_shape=(8, 112, 112, 3))
"""
from __future__ import annotations

import dataclasses

import keras

from d3d_tf.models import layers as L
from d3d_tf.models.video_model import VideoModel, check_input_shape, config_for

VALID_ENDPOINTS = ("conv1", "layer1", "layer2", "layer3", "layer4", "pooled")
BLOCKS = ("3d", "2plus1d")
WIDTHS = (64, 128, 256, 512)
R2PLUS1D_STEM_MID = 45  # torchvision's R2Plus1dStem: [1,7,7] conv to 45 channels


def resolve_endpoint(name: str) -> str:
    """`name` itself if it is an endpoint of this family, else ValueError listing them."""
    if name in VALID_ENDPOINTS:
        return name
    raise ValueError(f"Unknown endpoint {name!r}. Valid endpoints: {', '.join(VALID_ENDPOINTS)}.")


def mid_channels(n_in: int, n_out: int, t: int = 3, d: int = 3) -> int:
    """R(2+1)D's intermediate width: floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), which gives
    the (2+1)D conv the parameter count of a full [t,d,d] conv (Tran et al. 2018, Sec. 3.5)."""
    return (t * d * d * n_in * n_out) // (d * d * n_in + t * n_out)


@dataclasses.dataclass(frozen=True)
class ResNet3DConfig:
    """Options of the video ResNets.

    block: `3d` (Res3D, full [3,3,3] convs) or `2plus1d` (R(2+1)D); the stem follows it.
    layers: BasicBlocks per stage (18 layers: (2, 2, 2, 2)).
    depth_multiplier, min_depth: every width becomes `max(int(w * depth_multiplier), min_depth)`
      (a width multiplier for CPU-sized runs); R(2+1)D mid widths follow from the scaled widths.
    in_channels: 3 for RGB, 2 for optical flow.
    dropout_keep_prob: keep probability of the dropout before `Logits.fc` (torchvision: 1.0).
    conv_impl: as in S3D-G (`layers.Conv3D`): `2d` lowers [1,k,k] and [k,1,1] convs to 2D,
      `2d_all` also the full [3,3,3] / [3,7,7] kernels (a TFLite model without CONV_3D),
      `2d_spatial` only the [1,k,k] ones, `auto` (default) `2d` or `2d_spatial` per CPU.
    pooling: accepted for the shared export path; these networks have no 3D pooling layer.
    batch_norm_decay, batch_norm_epsilon: torchvision's momentum 0.1 and eps 1e-5.
    weight_decay: L2 on conv and dense kernels (DistInit, Sec. 4: 1e-4).
    final_endpoint: last endpoint built (`conv1` ... `layer4`, `pooled`).
    temporal: False gives every kernel and stride a temporal size of 1 (`r2d_18`): the 2D
      ResNet-18 run frame by frame, i.e. torchvision's `resnet18` without its stem max pool
      (which owns no variables), the source network of 2D-to-3D inflation.
    """

    block: str = "3d"
    temporal: bool = True
    layers: tuple = (2, 2, 2, 2)
    depth_multiplier: float = 1.0
    min_depth: int = 8
    in_channels: int = 3
    dropout_keep_prob: float = 1.0
    conv_impl: str = "auto"
    pooling: str = "3d"
    batch_norm_decay: float = 0.9
    batch_norm_epsilon: float = 1e-5
    weight_decay: float = 1e-4
    sync_batch_norm: bool = False
    final_endpoint: str = "pooled"

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"layers must be 4 block counts >= 1, got {self.layers}")
        if self.depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {self.depth_multiplier}")
        if self.min_depth < 1:
            raise ValueError(f"min_depth must be >= 1, got {self.min_depth}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if not 0.0 < self.dropout_keep_prob <= 1.0:
            raise ValueError(f"dropout_keep_prob must be in (0, 1], got {self.dropout_keep_prob}")
        if self.conv_impl not in L.CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {L.CONV_IMPLS}, got {self.conv_impl!r}")
        if self.pooling not in L.POOLING_MODES:
            raise ValueError(f"pooling must be one of {L.POOLING_MODES}, got {self.pooling!r}")
        resolve_endpoint(self.final_endpoint)
        if not self.temporal and self.block != "3d":
            raise ValueError("temporal=False (a 2D network) needs block='3d'")

    def depth(self, d: int) -> int:
        return max(int(d * self.depth_multiplier), self.min_depth)

    @property
    def conv(self) -> L.ConvConfig:
        return L.ConvConfig(
            batch_norm_decay=self.batch_norm_decay,
            batch_norm_epsilon=self.batch_norm_epsilon,
            weight_decay=self.weight_decay,
            sync_batch_norm=self.sync_batch_norm,
            pooling=self.pooling,
            conv_impl=self.conv_impl,
            batch_norm_scale=True,
            padding="symmetric",
        )


PRESETS = {
    "r3d_18": {"block": "3d"},
    "r2plus1d_18": {"block": "2plus1d"},
    "r2d_18": {"block": "3d", "temporal": False},
}


def make_config(name: str, **options) -> ResNet3DConfig:
    """The preset `name` (`r3d_18`, `r2plus1d_18`) with `options` overriding its fields."""
    if name not in PRESETS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(PRESETS)}.")
    fields = {f.name for f in dataclasses.fields(ResNet3DConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for {name!r}; valid: {sorted(fields)}")
    return ResNet3DConfig(**{**PRESETS[name], **options})


def _kernel_init():
    # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv_bn(x, filters, kernel, strides, *, name, cc, relu):
    """Conv (no bias) named `name`, BN `name.BatchNorm`, optional ReLU `name.relu`."""
    x = L._conv3d(x, filters, kernel, strides=strides, use_bias=False,
                  kernel_initializer=_kernel_init(), name=name, cfg=cc)
    x = L._batch_norm(x, name=f"{name}.BatchNorm", cfg=cc)
    return keras.layers.ReLU(name=f"{name}.relu")(x) if relu else x


def _block_conv(x, filters, mid, stride, *, name, cfg: ResNet3DConfig, relu):
    """A [3,3,3] conv (Res3D) or [1,3,3] -> mid, BN, ReLU, [3,1,1] (R(2+1)D); then BN (+ReLU)."""
    cc = cfg.conv
    if cfg.block == "3d":
        kt, st = (3, stride) if cfg.temporal else (1, 1)
        return _conv_bn(x, filters, (kt, 3, 3), (st, stride, stride), name=name, cc=cc,
                        relu=relu)
    x = _conv_bn(x, mid, (1, 3, 3), (1, stride, stride), name=name, cc=cc, relu=True)
    return _conv_bn(x, filters, (3, 1, 1), (stride, 1, 1), name=f"{name}.temporal", cc=cc,
                    relu=relu)


def _basic_block(x, filters, stride, *, name, cfg: ResNet3DConfig):
    """torchvision's BasicBlock: conv1 (BN, ReLU), conv2 (BN), + shortcut, ReLU."""
    n_in = x.shape[-1]
    mid = mid_channels(n_in, filters)
    shortcut = x
    if stride != 1 or n_in != filters:
        st = stride if cfg.temporal else 1
        shortcut = _conv_bn(x, filters, (1, 1, 1), (st, stride, stride),
                            name=f"{name}.downsample", cc=cfg.conv, relu=False)
    y = _block_conv(x, filters, mid, stride, name=f"{name}.conv1", cfg=cfg, relu=True)
    y = _block_conv(y, filters, mid, 1, name=f"{name}.conv2", cfg=cfg, relu=False)
    y = keras.layers.Add(name=f"{name}.add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}.relu")(y)


def _stem(x, cfg: ResNet3DConfig):
    cc = cfg.conv
    width = cfg.depth(WIDTHS[0])
    if cfg.block == "3d":
        kt = 3 if cfg.temporal else 1
        return _conv_bn(x, width, (kt, 7, 7), (1, 2, 2), name="conv1", cc=cc, relu=True)
    x = _conv_bn(x, cfg.depth(R2PLUS1D_STEM_MID), (1, 7, 7), (1, 2, 2), name="conv1", cc=cc,
                 relu=True)
    return _conv_bn(x, width, (3, 1, 1), (1, 1, 1), name="conv1.temporal", cc=cc, relu=True)


def resnet3d_base(inputs, cfg: ResNet3DConfig) -> dict:
    """Builds the network on the Keras tensor `inputs` `[B,T,H,W,C]`.

    Returns an ordered dict `{endpoint: tensor}` up to `cfg.final_endpoint`: `conv1`
    `[B,T,H/2,W/2,64m]`, `layer1` (same size), `layer2..4` (T, H, W halved each time; 128m,
    256m, 512m channels), `pooled` `[B,512m]`.
    """
    endpoints = {}
    net = _stem(inputs, cfg)
    endpoints["conv1"] = net
    for i, (width, blocks) in enumerate(zip(WIDTHS, cfg.layers)):
        if cfg.final_endpoint == VALID_ENDPOINTS[i]:
            return endpoints
        name = f"layer{i + 1}"
        for j in range(blocks):
            stride = 2 if i > 0 and j == 0 else 1
            net = _basic_block(net, cfg.depth(width), stride, name=f"{name}.{j}", cfg=cfg)
        endpoints[name] = net
    if cfg.final_endpoint == "pooled":
        endpoints["pooled"] = L.SpatioTemporalMean(name="pooled")(net)
    return endpoints


def logits_head(pooled, num_classes: int, cfg: ResNet3DConfig):
    """`[B,C]` pooled features -> dropout -> dense `Logits.fc` -> logits `[B,num_classes]`."""
    net = keras.layers.Dropout(1.0 - cfg.dropout_keep_prob, name="Logits.Dropout")(pooled)
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        kernel_regularizer=L._regularizer(cfg.conv),
        name="Logits.fc",
    )(net)


def build_backbone(name: str = "r3d_18", *, input_shape=(8, 112, 112, 3), **options) -> keras.Model:
    """A backbone whose output is an ordered dict `{endpoint: tensor}` (`conv1` ... `pooled`).

    Args:
      name: `r3d_18`, `r2plus1d_18` or `r2d_18` (2D, frame by frame).
      input_shape: `(frames, height, width, channels)`; any of the first three may be None.
      **options: fields of `ResNet3DConfig` (`depth_multiplier`, `final_endpoint`, ...).
    """
    cfg = config_for(make_config, name, input_shape, options)
    input_shape = check_input_shape(input_shape, cfg.in_channels)
    inputs = keras.Input(shape=input_shape, name="inputs")
    model = VideoModel(inputs, resnet3d_base(inputs, cfg), config=cfg, name=f"{name}_backbone")
    return model


def build_classifier(
    name: str = "r3d_18",
    *,
    num_classes: int,
    input_shape=(8, 112, 112, 3),
    endpoints=(),
    **options,
) -> keras.Model:
    """Network + head. Output: logits `[B,num_classes]`, or, when `endpoints` names any
    (`conv1`, `layer1` ... `layer4`, `pooled`), a dict with `logits` plus those endpoints."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    cfg = config_for(make_config, name, input_shape, options)
    if cfg.final_endpoint != "pooled":
        cfg = dataclasses.replace(cfg, final_endpoint="pooled")
    input_shape = check_input_shape(input_shape, cfg.in_channels)
    if isinstance(endpoints, str):
        endpoints = (endpoints,)
    wanted = [resolve_endpoint(e) for e in endpoints]
    inputs = keras.Input(shape=input_shape, name="inputs")
    feats = resnet3d_base(inputs, cfg)
    logits = logits_head(feats["pooled"], num_classes, cfg)
    outputs = {"logits": logits, **{e: feats[e] for e in wanted}} if wanted else logits
    model = VideoModel(inputs, outputs, config=cfg, name=name)
    return model
