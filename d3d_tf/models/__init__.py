"""Video backbones and classifiers, built by name.

    from d3d_tf import models
    backbone = models.build_backbone("s3dg", input_shape=(64, 224, 224, 3))
    net = models.build_classifier("s3dg", num_classes=400, endpoints=("2C", "4F"))
    net = models.build_classifier("r2plus1d_18", num_classes=51, input_shape=(8, 112, 112, 3))

Presets of every family (S3D-G / S3D / I3D in `s3dg`, Res3D-18 / R(2+1)D-18 in `resnet3d`)
are looked up in `registry`. `resolve_endpoint` and `VALID_ENDPOINTS` are S3D-G's.
"""
from d3d_tf.models.registry import (
    PRESETS,
    build_backbone,
    build_classifier,
    family_of,
    make_config,
)
from d3d_tf.models.s3dg import (
    ALIASES,
    VALID_ENDPOINTS,
    S3DGConfig,
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
    "family_of",
    "make_config",
    "resolve_endpoint",
]
