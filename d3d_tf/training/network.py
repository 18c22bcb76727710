"""The trained network's options and clip shape from a run's settings, and the precision that
trains it fastest on this machine."""
from __future__ import annotations

from absl import logging

from d3d_tf import models
from d3d_tf.models import cpu_choices
from d3d_tf.models import summary as model_summary
from d3d_tf.training import optimization

# Run settings passed to the network builder as they are (S3DGConfig fields).
NETWORK_FIELDS = ("depth_multiplier", "dropout_keep_prob", "weight_decay", "sync_batch_norm",
                  "batch_norm_decay", "head", "conv_impl")
# Settings whose None means "the preset's value" and whose "none" means None.
PRESET_FIELDS = ("first_temporal_kernel_size", "temporal_conv_startat", "gating_startat")
# The options that own no variables: a restored backbone (--init_from) takes these from the run.
RUN_ONLY_FIELDS = ("dropout_keep_prob", "weight_decay", "sync_batch_norm", "batch_norm_decay")


def model_options(c, in_channels: int) -> dict:
    """The network options of run settings `c` (on top of the `c.model` preset), restricted to
    the fields of its family's config (video ResNets take fewer)."""
    options = {k: getattr(c, k) for k in NETWORK_FIELDS}
    for k in PRESET_FIELDS:
        value = getattr(c, k)
        if value is not None:
            options[k] = None if str(value).lower() == "none" else value
    fields = models.family_of(c.model).config_fields
    return {k: v for k, v in {**options, "in_channels": in_channels}.items() if k in fields}


def clip_shape(c) -> tuple[int, int, int, int]:
    """[T, H, W, C] of the clips the trained network reads: C = 2 for flow (x, y), 3 for RGB."""
    return (c.num_frames, c.crop_size, c.crop_size, 2 if c.modality == "flow" else 3)


def resolve_precision(c, num_classes: int, per_replica: int, devices=None) -> str:
    """`c.precision`, or for `auto` the dtype this machine trains this run fastest in.

    devices: the machine's physical devices (default: this process's,
    `cpu_choices.local_devices()`). `auto` is `cpu_choices.auto_choices`: mixed_float16 with a
    GPU; on a CPU bfloat16 only where it is native and only for a step of at least
    `cpu_choices.BF16_MIN_GFLOPS_PER_STEP` forward GFLOPs, which it counts on a float32 copy
    of the network built at the run's clip shape.
    """
    flags = cpu_choices.cpu_flags()
    devices = cpu_choices.local_devices() if devices is None else devices
    on_gpu = cpu_choices.has_gpu(devices)
    native = cpu_choices.has_native_bfloat16(flags)
    if c.precision != "auto":
        optimization.warn_precision(c.precision, on_gpu, native)
        return c.precision
    if on_gpu or not native:
        return cpu_choices.auto_choices(devices, flags).precision
    shape = clip_shape(c)
    probe = models.build_classifier(c.model, num_classes=num_classes, input_shape=shape,
                                    **model_options(c, shape[-1]))
    gflops = model_summary.total_flops(probe) / 1e9 * per_replica
    del probe
    logging.debug("%.1f forward GFLOPs per replica step", gflops)
    return cpu_choices.auto_precision(flags, gflops)
