"""The one mapping between Keras variable paths and TF-Slim S3D-G variable names.

Keras 3 forbids `/` in layer names, so layers carry the slim scope with `.` in its place:

    Keras `Mixed_4b.Branch_1.Conv2d_0b_3x3.temporal/bias`
    slim  `InceptionV1/Mixed_4b/Branch_1/Conv2d_0b_3x3/temporal/biases`
"""
from __future__ import annotations

SLIM_SCOPE = "InceptionV1"

# Keras weight name -> slim variable leaf.
_LEAVES = {
    "kernel": "weights",
    "bias": "biases",
    "beta": "beta",
    "gamma": "gamma",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
    "transformer_W": "transformer_W/weights",
}
_KERAS_LEAVES = {v: k for k, v in _LEAVES.items()}


def slim_name(keras_path: str, scope: str = SLIM_SCOPE) -> str:
    """Slim variable name of the Keras variable path `layer.name/weight_name`."""
    layer, _, leaf = keras_path.rpartition("/")
    if not layer or leaf not in _LEAVES:
        raise ValueError(f"Cannot map Keras variable {keras_path!r} to a slim name")
    return f"{scope}/{layer.replace('.', '/')}/{_LEAVES[leaf]}"


def keras_path(slim_variable: str, scope: str = SLIM_SCOPE) -> str:
    """Inverse of `slim_name`: the Keras variable path of a slim variable name."""
    prefix = scope + "/"
    if not slim_variable.startswith(prefix):
        raise ValueError(f"Slim variable {slim_variable!r} is not under scope {scope!r}")
    rest = slim_variable[len(prefix):]
    for leaf, keras_leaf in sorted(_KERAS_LEAVES.items(), key=lambda kv: -len(kv[0])):
        if rest.endswith("/" + leaf):
            layer = rest[: -len(leaf) - 1]
            return f"{layer.replace('/', '.')}/{keras_leaf}"
    raise ValueError(f"Cannot map slim variable {slim_variable!r} to a Keras variable")
