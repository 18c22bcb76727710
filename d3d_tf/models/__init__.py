"""Video backbones and classifiers, built by name.

    from d3d_tf import models
    backbone = models.build_backbone("s3dg", input_shape=(64, 224, 224, 3))
    net = models.build_classifier("s3dg", num_classes=400, endpoints=("2C", "4F"))
    net = models.build_classifier("r2plus1d_18", num_classes=51, input_shape=(8, 112, 112, 3))

Presets of every family (S3D-G / S3D / I3D in `s3dg`, Res3D-18 / R(2+1)D-18 in `resnet3d`)
are looked up in `registry`. `resolve_endpoint` and `VALID_ENDPOINTS` are S3D-G's.
"""
import importlib

# Imported on first use (PEP 562), so that `python -m d3d_tf.models.summary --help` and the
# flag declarations of every tool do not load Keras and TensorFlow.
_LAZY = {"PRESETS": "registry", "build_backbone": "registry", "build_classifier": "registry",
         "family_of": "registry", "make_config": "registry", "ALIASES": "s3dg",
         "VALID_ENDPOINTS": "s3dg", "S3DGConfig": "s3dg", "resolve_endpoint": "s3dg"}


def __getattr__(name):
    if name == "MODEL_NAMES":
        return tuple(__getattr__("PRESETS"))
    if name in _LAZY:
        return getattr(importlib.import_module(f"d3d_tf.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'd3d_tf.models' has no attribute {name!r}")


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
