"""Model families by preset name: one entry per family (its config class and builders).

    family = registry.family_of("r2plus1d_18")     # -> the resnet3d Family
    cfg = family.make_config("r2plus1d_18", depth_multiplier=0.25)
    net = family.build_classifier("r2plus1d_18", num_classes=5, config=cfg)

`saving.ModelSpec.build`, `models.build_classifier` and the trainer look the family up here, so
adding a family is one entry in `FAMILIES`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from d3d_tf.models import resnet3d, s3dg


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: its presets, config dataclass and builders (same signatures in all)."""

    name: str
    presets: dict
    config_class: type
    make_config: Callable
    build_classifier: Callable
    build_backbone: Callable
    resolve_endpoint: Callable
    valid_endpoints: tuple

    @property
    def config_fields(self) -> frozenset:
        return frozenset(f.name for f in dataclasses.fields(self.config_class))


FAMILIES = (
    Family("s3dg", s3dg.PRESETS, s3dg.S3DGConfig, s3dg.make_config, s3dg.build_classifier,
           s3dg.build_backbone, s3dg.resolve_endpoint, s3dg.VALID_ENDPOINTS),
    Family("resnet3d", resnet3d.PRESETS, resnet3d.ResNet3DConfig, resnet3d.make_config,
           resnet3d.build_classifier, resnet3d.build_backbone, resnet3d.resolve_endpoint,
           resnet3d.VALID_ENDPOINTS),
)

PRESETS = {name: preset for f in FAMILIES for name, preset in f.presets.items()}


def family_of(name: str) -> Family:
    """The family of the preset `name`; ValueError listing every preset when unknown."""
    for f in FAMILIES:
        if name in f.presets:
            return f
    raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(PRESETS)}.")


def family_of_network(network) -> Family:
    """The family of a built network: that of its preset name (`network.name`, as
    `build_classifier` and `saving.load_model_dir` name it), else S3D-G's (a network built
    under another name, e.g. a probe or detector)."""
    return family_of(network.name if network.name in PRESETS else "s3dg")


def make_config(name: str, **options):
    return family_of(name).make_config(name, **options)


def build_classifier(name: str = "s3dg", **kwargs):
    """`build_classifier` of the family of `name` (same arguments as `s3dg.build_classifier`)."""
    return family_of(name).build_classifier(name, **kwargs)


def build_backbone(name: str = "s3dg", **kwargs):
    return family_of(name).build_backbone(name, **kwargs)
