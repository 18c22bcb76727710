"""Flow decoders of D3D §3.1: small conv heads that read optical flow off a backbone endpoint.

    probe = attach_decoder(network, "3A", "pwc")   # network built with endpoints=("3A",)
    out = probe(clip)                               # {"flow": [B,T',H',W',3], ...}

No kernel has a temporal extent (every kernel is `1×k×k`), so a decoder cannot compute motion
of its own: whatever flow it predicts was already in the endpoint's features. The output is
`(mag, sin θ, cos θ)` (Im2Flow's representation, `d3d_tf.probes.flow_probe`) at the
endpoint's T'×H'×W', linear (no activation). Convolutions have a bias and no batch norm.

* `simple`: one 3×(1×1×1) conv.
* `spatial`: two C×(1×3×3) convs with ReLU (C = the endpoint's channels), then 3×(1×1×1).
* `pwc`: PWC-Net's flow estimator without cost volume and warping: six (1×3×3) convs with
  128, 128, 96, 64, 32, 3 channels, leaky ReLU (slope 0.1) after all but the last, as in
  PWC-Net. PWC-Net's estimator is densely connected (each conv also sees the outputs of all
  earlier ones, DenseNet-style); D3D lists only the six channel counts and calls the decoder
  "equivalent" to that estimator, so the default is the plain chain (`dense=False`, the
  shape of D3D's Fig. 3; 554,275 parameters on a 192-channel endpoint such as 3A) and
  `dense=True` gives the densely connected estimator (each conv's input = the endpoint
  features concatenated with every earlier conv's output).

Parameter counts (C = endpoint channels), checked by the tests:
  simple  3C + 3
  spatial 2(9C² + C) + 3C + 3
  pwc     Σ_l 9·in_l·out_l + out_l, out = (128, 128, 96, 64, 32, 3),
          in_l = C then out_{l-1} (plain) or C + Σ_{k<l} out_k (dense)
"""
from __future__ import annotations

import keras

from d3d_tf.models import layers as L
from d3d_tf.models import registry
from d3d_tf.models.video_model import VideoModel
from d3d_tf.probes.config import DECODERS

PWC_CHANNELS = (128, 128, 96, 64, 32, 3)
PREFIX = "FlowDecoder"


def _conv(x, filters, k, name, conv_impl, activation=None):
    x = L.Conv3D(filters, (1, k, k), padding="same", use_bias=True, impl=conv_impl,
                 name=name)(x)
    if activation == "relu":
        return keras.layers.ReLU(name=name + ".relu")(x)
    if activation == "leaky":  # PWC-Net's estimator: leaky ReLU with slope 0.1
        return keras.layers.LeakyReLU(negative_slope=0.1, name=name + ".leaky_relu")(x)
    return x


def decode(features, kind: str, *, dense: bool = False, conv_impl: str = "auto",
           prefix: str = PREFIX):
    """Applies a new decoder of `kind` to `features` [B,T',H',W',C] (a Keras tensor).

    Returns the prediction [B,T',H',W',3] = (mag in pixels, sin θ, cos θ). Layer names are
    `{prefix}.Conv2d_{i}` (i from 1), so the decoder's variables are easy to tell apart.
    """
    if kind not in DECODERS:
        raise ValueError(f"decoder {kind!r} unknown; choose one of {', '.join(DECODERS)}")
    c = features.shape[-1]
    if kind == "simple":
        return _conv(features, 3, 1, f"{prefix}.Conv2d_1", conv_impl)
    if kind == "spatial":
        x = _conv(features, c, 3, f"{prefix}.Conv2d_1", conv_impl, "relu")
        x = _conv(x, c, 3, f"{prefix}.Conv2d_2", conv_impl, "relu")
        return _conv(x, 3, 1, f"{prefix}.Conv2d_3", conv_impl)
    x, seen = features, [features]
    for i, filters in enumerate(PWC_CHANNELS, start=1):
        last = i == len(PWC_CHANNELS)
        y = _conv(x, filters, 3, f"{prefix}.Conv2d_{i}", conv_impl,
                  None if last else "leaky")
        if dense and not last:
            seen.append(y)
            x = keras.layers.Concatenate(axis=-1, name=f"{prefix}.Concat_{i}")(seen)
        else:
            x = y
    return x


def attach_decoder(network: keras.Model, endpoint: str, kind: str, *, dense: bool = False,
                   keep_outputs: bool = False) -> keras.Model:
    """A model clip -> {"flow": (mag, sin θ, cos θ) [B,T',H',W',3]} reading `endpoint`.

    network: a classifier from `models.build_classifier` / `saving.load_model_dir` built with
      `endpoint` among its `endpoints` (a name of its family, `models.registry`: a slim name
      or alias such as `3A`, `Mixed_4f` for S3D-G, `layer2` for a video ResNet). Its
      layers (and variables) are shared, not copied: freeze it with `network.trainable = False`.
    keep_outputs: also return the network's own outputs (`logits`, endpoints); otherwise the
      model only runs the backbone up to `endpoint`.
    Raises ValueError naming the endpoint when the network does not output it.
    """
    name = registry.family_of_network(network).resolve_endpoint(endpoint)
    outputs = network.output if isinstance(network.output, dict) else {"logits": network.output}
    if name not in outputs:
        raise ValueError(f"network {network.name!r} does not output endpoint {name!r}; build it "
                         f"with endpoints=({endpoint!r},)")
    conv_impl = network.d3d_config.conv_impl
    flow = decode(outputs[name], kind, dense=dense, conv_impl=conv_impl)
    result = {**outputs, "flow": flow} if keep_outputs else {"flow": flow}
    model = VideoModel(network.input, result, config=network.d3d_config,
                       name=f"{network.name}_{kind}_decoder")
    return model


def decoder_variables(model: keras.Model) -> list:
    """The variables of the decoder layers of `model` (names starting with `FlowDecoder.`)."""
    return [w for w in model.weights if w.path.startswith(PREFIX + ".")]
