"""Video backbones and classifiers, built by name.

    from d3d_tf import models
    backbone = models.build_backbone("s3dg", input_shape=(64, 224, 224, 3))
    net = models.build_classifier("s3dg", num_classes=400, endpoints=("2C", "4F"))
"""
from d3d_tf.models.s3dg import (
    ALIASES,
    PRESETS,
    VALID_ENDPOINTS,
    S3DGConfig,
    build_backbone,
    build_classifier,
    make_config,
    resolve_endpoint,
)

MODEL_NAMES = tuple(PRESETS)

__all__ = [
    "ALIASES",
    "MODEL_NAMES",
    "PRESETS",
    "VALID_ENDPOINTS",
    "S3DGConfig",
    "build_backbone",
    "build_classifier",
    "make_config",
    "resolve_endpoint",
]
