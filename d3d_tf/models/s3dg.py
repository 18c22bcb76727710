"""S3D-G, S3D and I3D (Xie et al. 2018; Carreira & Zisserman 2017) as Keras 3 functional models.

The structure, defaults and names follow TF-Slim's `research/slim/nets/s3dg.py` so that its
checkpoints (and the released D3D checkpoints, which are S3D-G) map one to one. Input
`[B,T,H,W,C]` (C = 3 for RGB, 2 for flow); `SAME` padding in the base.

    backbone = build_backbone("s3dg", input_shape=(64, 224, 224, 3))
    endpoints = backbone(clip)   # ordered dict: Conv2d_1a_7x7 ... Mixed_5c

Like kinetics-i3d's `i3d.py`, the build loop walks `VALID_ENDPOINTS` and stops at
`final_endpoint`.
"""
from __future__ import annotations

import dataclasses

import keras

from d3d_tf.models import layers as L
from d3d_tf.models.video_model import VideoModel, check_input_shape, config_for

VALID_ENDPOINTS = (
    "Conv2d_1a_7x7",
    "MaxPool_2a_3x3",
    "Conv2d_2b_1x1",
    "Conv2d_2c_3x3",
    "MaxPool_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)

# The paper's short names (D3D, Fig. 2 and Table 4).
ALIASES = {
    "1A": "Conv2d_1a_7x7",
    "2A": "MaxPool_2a_3x3",
    "2B": "Conv2d_2b_1x1",
    "2C": "Conv2d_2c_3x3",
    "3A": "MaxPool_3a_3x3",
    "3B": "Mixed_3b",
    "3C": "Mixed_3c",
    "4A": "MaxPool_4a_3x3",
    "4B": "Mixed_4b",
    "4C": "Mixed_4c",
    "4D": "Mixed_4d",
    "4E": "Mixed_4e",
    "4F": "Mixed_4f",
    "5A": "MaxPool_5a_2x2",
    "5B": "Mixed_5b",
    "5C": "Mixed_5c",
}

# Blocks whose convs can become (separable) 3D and gated: temporal_conv_startat / gating_startat.
CONV_BLOCKS = tuple(e for e in VALID_ENDPOINTS if e.startswith(("Conv2d_2c", "Mixed")))

# Inception blocks: (branch0 1x1, branch1 1x1 -> 3x3, branch2 1x1 -> 3x3, branch3 pool -> 1x1).
INCEPTION_DEPTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# Max pools between blocks: (kernel, stride).
MAX_POOLS = {
    "MaxPool_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}

HEADS = ("slim", "global")


def resolve_endpoint(name: str) -> str:
    """Canonical slim endpoint name for `name` (a slim name or a short alias like `4F`)."""
    if name in ALIASES:
        return ALIASES[name]
    if isinstance(name, str) and name.upper() in ALIASES:
        return ALIASES[name.upper()]
    if name in VALID_ENDPOINTS:
        return name
    raise ValueError(
        f"Unknown endpoint {name!r}. Valid endpoints: {', '.join(VALID_ENDPOINTS)}; "
        f"short names: {', '.join(ALIASES)}."
    )


@dataclasses.dataclass(frozen=True)
class S3DGConfig:
    """Options of the S3D-G family, with the meaning of the slim reference.

    first_temporal_kernel_size: temporal size of the `[k,7,7]` stem conv (1, 3, 5 or 7).
    temporal_conv_startat: first block (from `CONV_BLOCKS`, or an alias) whose convs have a
      temporal kernel of 3; earlier blocks use `[1,k,k]`. `None` = never (a 2D network).
    gating_startat: first block with self-gating; `None` = never.
    separable: `[t,k,k]` convs as `[1,k,k]` + `[t,1,1]` (S3D) instead of full 3D (I3D).
    depth_multiplier, min_depth: every conv gets `max(int(d * depth_multiplier), min_depth)`.
    final_endpoint: last endpoint built.
    in_channels: 3 for RGB, 2 for optical flow.
    dropout_keep_prob: classifier head dropout keep probability.
    head: `slim` (avg pool [2,7,7] VALID shrunk to the input, dropout, 1x1x1 conv, mean over
      time) or `global` (mean over T,H,W, dropout, 1x1x1 conv): both accept any input size.
    pooling: `3d` (Keras 3D pools) or `2d` (the same pools as 2D ops, for TFLite).
    conv_impl: `2d` runs `[1,k,k]` and `[t,1,1]` convs as 2D convs over reshaped tensors
      (faster on CPU, TFLite-accelerable), `2d_all` also lowers full 3D kernels (the stem) to
      sums of 2D convs (a TFLite model without CONV_3D), `2d_spatial` lowers only the
      `[1,k,k]` convs, `3d` always uses `conv3d`, `auto` (default) is `2d` or `2d_spatial`
      per CPU (`cpu_choices`); the variables are the same in all.
    stem_separable: `Conv2d_1a_7x7` as `[1,7,7]` + `[k,1,1]` (torchvision's S3D) instead of a
      full `[k,7,7]` conv (slim).
    temporal_batch_norm: batch norm after every `[t,1,1]` conv, which then has no bias
      (torchvision); slim has a bias and no batch norm there.
    batch_norm_scale: batch norm with a learned gamma (torchvision); slim has none.
    padding: `same` (TF `SAME`, slim) or `symmetric` (PyTorch's explicit `(k-1)//2` padding of
      convs and max pools, e.g. torchvision).
    The last four default to slim so that slim checkpoints map one to one.
    """

    first_temporal_kernel_size: int = 3
    temporal_conv_startat: str | None = "Conv2d_2c_3x3"
    gating_startat: str | None = "Conv2d_2c_3x3"
    separable: bool = True
    depth_multiplier: float = 1.0
    min_depth: int = 16
    final_endpoint: str = "Mixed_5c"
    in_channels: int = 3
    batch_norm_decay: float = 0.999
    batch_norm_epsilon: float = 1e-3
    weight_decay: float = 1e-7
    sync_batch_norm: bool = False
    dropout_keep_prob: float = 0.8
    head: str = "slim"
    pooling: str = "3d"
    conv_impl: str = "auto"
    stem_separable: bool = False
    temporal_batch_norm: bool = False
    batch_norm_scale: bool = False
    padding: str = "same"

    def __post_init__(self):
        if self.first_temporal_kernel_size not in (1, 3, 5, 7):
            raise ValueError(
                "first_temporal_kernel_size can only be 1, 3, 5 or 7, "
                f"got {self.first_temporal_kernel_size!r}"
            )
        if self.depth_multiplier <= 0:
            raise ValueError(f"depth_multiplier must be > 0, got {self.depth_multiplier}")
        if self.min_depth < 1:
            raise ValueError(f"min_depth must be >= 1, got {self.min_depth}")
        if not 0.0 < self.dropout_keep_prob <= 1.0:
            raise ValueError(f"dropout_keep_prob must be in (0, 1], got {self.dropout_keep_prob}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.pooling not in L.POOLING_MODES:
            raise ValueError(f"pooling must be one of {L.POOLING_MODES}, got {self.pooling!r}")
        if self.conv_impl not in L.CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {L.CONV_IMPLS}, got {self.conv_impl!r}")
        if self.padding not in L.PADDINGS:
            raise ValueError(f"padding must be one of {L.PADDINGS}, got {self.padding!r}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        # Normalize aliases so that the config always holds slim names.
        object.__setattr__(self, "final_endpoint", resolve_endpoint(self.final_endpoint))
        for field in ("temporal_conv_startat", "gating_startat"):
            value = getattr(self, field)
            if value is not None:
                value = resolve_endpoint(value)
                if value not in CONV_BLOCKS:
                    raise ValueError(
                        f"{field} must be one of {CONV_BLOCKS} or None, got {value!r}"
                    )
                object.__setattr__(self, field, value)

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
            batch_norm_scale=self.batch_norm_scale,
            temporal_batch_norm=self.temporal_batch_norm,
            padding=self.padding,
        )


PRESETS = {
    "s3dg": {},
    "s3d": {"gating_startat": None},
    "i3d": {"first_temporal_kernel_size": 7, "separable": False, "gating_startat": None},
    # torchvision.models.video.s3d: S3D with a separable [1,7,7] + [7,1,1] stem, batch norm
    # (with gamma) after every conv, PyTorch padding. Its head equals the slim head.
    "s3d_torchvision": {
        "gating_startat": None,
        "first_temporal_kernel_size": 7,
        "stem_separable": True,
        "temporal_batch_norm": True,
        "batch_norm_scale": True,
        "padding": "symmetric",
    },
}


def make_config(name: str, **options) -> S3DGConfig:
    """The preset `name` (`s3dg`, `s3d`, `i3d`) with `options` overriding its fields."""
    if name not in PRESETS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(PRESETS)}.")
    fields = {f.name for f in dataclasses.fields(S3DGConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for {name!r}; valid: {sorted(fields)}")
    return S3DGConfig(**{**PRESETS[name], **options})


def _inception_block(x, name, depths, *, t, gating, cfg: S3DGConfig):
    """Slim's `inception_block_v1_3d`: four branches, each optionally self-gated, concatenated."""
    d0, d1a, d1b, d2a, d2b, d3 = (cfg.depth(d) for d in depths)
    cc = cfg.conv

    def gate(y, scope):
        return L.self_gating(y, name=scope, cfg=cc) if gating else y

    b0 = L.unit_conv(x, d0, 1, name=f"{name}.Branch_0.Conv2d_0a_1x1", cfg=cc)
    b0 = gate(b0, f"{name}.Branch_0.Conv2d_0a_1x1")

    b1 = L.unit_conv(x, d1a, 1, name=f"{name}.Branch_1.Conv2d_0a_1x1", cfg=cc)
    b1 = L.spatiotemporal_conv(
        b1, d1b, (t, 3, 3), name=f"{name}.Branch_1.Conv2d_0b_3x3", cfg=cc, separable=cfg.separable
    )
    b1 = gate(b1, f"{name}.Branch_1.Conv2d_0b_3x3")

    b2 = L.unit_conv(x, d2a, 1, name=f"{name}.Branch_2.Conv2d_0a_1x1", cfg=cc)
    b2 = L.spatiotemporal_conv(
        b2, d2b, (t, 3, 3), name=f"{name}.Branch_2.Conv2d_0b_3x3", cfg=cc, separable=cfg.separable
    )
    b2 = gate(b2, f"{name}.Branch_2.Conv2d_0b_3x3")

    b3 = L.max_pool3d(x, (3, 3, 3), (1, 1, 1), name=f"{name}.Branch_3.MaxPool_0a_3x3", cfg=cc)
    b3 = L.unit_conv(b3, d3, 1, name=f"{name}.Branch_3.Conv2d_0b_1x1", cfg=cc)
    b3 = gate(b3, f"{name}.Branch_3.Conv2d_0b_1x1")

    return keras.layers.Concatenate(axis=-1, name=f"{name}.concat")([b0, b1, b2, b3])


def s3dg_base(inputs, cfg: S3DGConfig, start_after: str | None = None) -> dict:
    """Builds the base network on the Keras tensor `inputs` `[B,T,H,W,C]`.

    With `start_after` (an endpoint), `inputs` stands for that endpoint's output and only the
    blocks after it are built (e.g. Mixed_5b/5c on RoI features), with the same layer names.
    Returns an ordered dict `{endpoint: tensor}` for every endpoint up to `cfg.final_endpoint`.
    """
    cc = cfg.conv
    endpoints = {}
    t, gating = 1, False
    net = inputs
    skipping = start_after is not None
    for end_point in VALID_ENDPOINTS:
        if end_point == cfg.temporal_conv_startat:
            t = 3
        if end_point == cfg.gating_startat:
            gating = True
        if skipping:
            skipping = end_point != resolve_endpoint(start_after)
            continue
        if end_point == "Conv2d_1a_7x7":
            # Slim: never separable, a separable first layer is slow (slim's comment).
            net = L.spatiotemporal_conv(
                net,
                cfg.depth(64),
                (cfg.first_temporal_kernel_size, 7, 7),
                strides=2,
                name=end_point,
                cfg=cc,
                separable=cfg.stem_separable,
            )
        elif end_point in MAX_POOLS:
            kernel, stride = MAX_POOLS[end_point]
            net = L.max_pool3d(net, kernel, stride, name=end_point, cfg=cc)
        elif end_point == "Conv2d_2b_1x1":
            net = L.unit_conv(net, cfg.depth(64), 1, name=end_point, cfg=cc)
        elif end_point == "Conv2d_2c_3x3":
            net = L.spatiotemporal_conv(
                net, cfg.depth(192), (t, 3, 3), name=end_point, cfg=cc, separable=cfg.separable
            )
            if gating:
                net = L.self_gating(net, name=end_point, cfg=cc)
        else:
            net = _inception_block(
                net, end_point, INCEPTION_DEPTHS[end_point], t=t, gating=gating, cfg=cfg
            )
        endpoints[end_point] = net
        if end_point == cfg.final_endpoint:
            break
    return endpoints


def logits_head(net, num_classes: int, cfg: S3DGConfig):
    """Classifier head on the last endpoint `[B,T,H,W,C]` -> logits `[B,num_classes]`.

    `slim`: avg pool [2,7,7] stride 1 VALID (kernel shrunk to the input when smaller), dropout,
    1x1x1 conv with bias, mean over time — and over space too, which equals slim's squeeze when
    the pooled map is 1x1 (224 px input) and keeps the head valid for larger inputs.
    `global`: mean over T,H,W, dropout, 1x1x1 conv with bias.
    """
    cc = cfg.conv
    if cfg.head == "slim":
        t, h, w = net.shape[1:4]
        kernel = tuple(min(s, k) if s is not None else k for s, k in zip((t, h, w), (2, 7, 7)))
        net = L.avg_pool3d(net, kernel, (1, 1, 1), name="Logits.AvgPool_0a_7x7", cfg=cc)
    else:
        net = L.SpatioTemporalMean(keepdims=True, name="Logits.GlobalAvgPool")(net)
    net = keras.layers.Dropout(1.0 - cfg.dropout_keep_prob, name="Logits.Dropout_0b")(net)
    net = L.Conv3D(
        num_classes,
        1,
        use_bias=True,
        kernel_regularizer=L._regularizer(cc),
        name="Logits.Conv2d_0c_1x1",
    )(net)
    return L.SpatioTemporalMean(name="Logits.SpatioTemporalMean")(net)


def build_backbone(name: str = "s3dg", *, input_shape=(64, 224, 224, 3), **options) -> keras.Model:
    """A backbone whose output is an ordered dict `{endpoint: [B,T,H,W,C] tensor}`.

    Args:
      name: `s3dg` (the paper's default), `s3d` (no gating) or `i3d`.
      input_shape: `(frames, height, width, channels)`; any of the first three may be None.
      **options: fields of `S3DGConfig` (`final_endpoint`, `depth_multiplier`, ...).
    """
    cfg = config_for(make_config, name, input_shape, options)
    input_shape = check_input_shape(input_shape, cfg.in_channels)
    inputs = keras.Input(shape=input_shape, name="inputs")
    endpoints = s3dg_base(inputs, cfg)
    model = VideoModel(inputs, endpoints, config=cfg, name=f"{name}_backbone")
    return model


def build_classifier(
    name: str = "s3dg",
    *,
    num_classes: int,
    input_shape=(64, 224, 224, 3),
    endpoints=(),
    **options,
) -> keras.Model:
    """Backbone + logits head as one network.

    Returns a model whose output is logits `[B,num_classes]` (pre-softmax), or, when
    `endpoints` names any (slim names or aliases such as `"4F"`), a dict with `logits` plus those
    endpoints under their slim names.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    cfg = config_for(make_config, name, input_shape, options)
    input_shape = check_input_shape(input_shape, cfg.in_channels)
    if isinstance(endpoints, str):
        endpoints = (endpoints,)
    wanted = [resolve_endpoint(e) for e in endpoints]
    last = VALID_ENDPOINTS.index(cfg.final_endpoint)
    for e in wanted:
        if VALID_ENDPOINTS.index(e) > last:
            raise ValueError(f"Endpoint {e!r} comes after final_endpoint {cfg.final_endpoint!r}")
    inputs = keras.Input(shape=input_shape, name="inputs")
    feats = s3dg_base(inputs, cfg)
    logits = logits_head(feats[cfg.final_endpoint], num_classes, cfg)
    outputs = {"logits": logits, **{e: feats[e] for e in wanted}} if wanted else logits
    model = VideoModel(inputs, outputs, config=cfg, name=name)
    return model
