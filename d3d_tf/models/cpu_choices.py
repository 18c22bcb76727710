"""Per-device defaults: how convolutions run (`conv_impl="auto"`) and whether training
computes in bfloat16 or float16 (`precision="auto"`).

Both choices leave the variables and the function unchanged; they only change speed (and,
for bfloat16, rounding). They are taken from the CPU's feature flags (`/proc/cpuinfo`) by
rules that follow the benchmark's measurements on each CPU type the project has met
(docs/performance.md has the tables):

* conv lowering: on x86 CPUs with AVX2 but no AVX-512 `2d_spatial` (the `[1,k,k]` convs as 2D
  convs, the `[t,1,1]` ones as `conv3d`); the full 2D lowering on AVX-512 CPUs and on unknown
  ones (no flags: not Linux, not x86), where TFLite and XNNPACK need it anyway.
* bfloat16: only where the CPU computes it natively (AVX512-BF16 or AMX; elsewhere TensorFlow
  falls back to Eigen kernels far slower than float32), and only for train steps of at least
  `BF16_MIN_GFLOPS_PER_STEP` forward GFLOPs per replica: smaller steps (narrow networks,
  small clips) gained nothing from it.

oneDNN's ISA cap `ONEDNN_MAX_CPU_ISA` (e.g. `AVX2`) hides the flags above it from the rules, as
it hides those instructions from oneDNN (`cap_flags`).

On a machine with a GPU (`auto_choices` of its device list) the rules are a GPU's: `conv3d`
(cuDNN's 3D convolutions; the 2D lowerings exist for CPUs and TFLite) and `mixed_float16`
(float16 compute on tensor cores, float32 variables, dynamic loss scaling in the train step).

An explicit value (`conv_impl="2d"`, `precision="float32"`) always overrides the rule.
"""
from __future__ import annotations

import dataclasses
import functools
import os

CONV_IMPLS = ("3d", "2d", "2d_spatial", "2d_all")
PRECISIONS = ("auto", "float32", "bfloat16", "mixed_float16")
# Forward GFLOPs per replica and train step from which bfloat16 is chosen on a native-bf16 CPU.
BF16_MIN_GFLOPS_PER_STEP = 9.0


# oneDNN's ISA cap (its `ONEDNN_MAX_CPU_ISA`, older `DNNL_MAX_CPU_ISA`): the flags above each
# level are what oneDNN then leaves unused, so the rules must not count them either.
_AMX = ("amx_",)
_ABOVE_AVX512_CORE = _AMX + ("avx512_bf16", "avx512_fp16")
_ABOVE_AVX2 = _AMX + ("avx512",)
_ISA_CAPS = {
    "SSE41": _ABOVE_AVX2 + ("avx2", "avx"), "AVX": _ABOVE_AVX2 + ("avx2",),
    "AVX2": _ABOVE_AVX2, "AVX2_VNNI": _ABOVE_AVX2, "AVX2_VNNI_2": _ABOVE_AVX2,
    "AVX512_CORE": _ABOVE_AVX512_CORE, "AVX512_CORE_VNNI": _ABOVE_AVX512_CORE,
    "AVX512_CORE_BF16": _AMX, "AVX10_1_512": _AMX, "AVX512_CORE_FP16": _AMX,
}


def max_isa() -> str | None:
    """oneDNN's ISA cap from the environment (`ONEDNN_MAX_CPU_ISA`), upper-case, or None."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value else None


def capped_at_avx2() -> bool:
    """Whether oneDNN's ISA cap (`max_isa`) is one of the AVX2 levels."""
    return _ISA_CAPS.get(max_isa() or "") == _ABOVE_AVX2


def cap_flags(flags: frozenset | None, isa: str | None) -> frozenset | None:
    """`flags` without the extensions above oneDNN's ISA cap `isa` (`AVX2`, `AVX512_CORE`, ...;
    None, `ALL`, the AMX levels or an unknown name leave them whole).

    With `ONEDNN_MAX_CPU_ISA=AVX2` TensorFlow's and PyTorch's oneDNN kernels run as on an AVX2
    CPU, and the rules pick what they pick there: how the benchmark measures the AVX2 case on
    an AVX-512 machine (same kernels, not the same cores or caches).
    """
    drop = _ISA_CAPS.get(isa or "")
    if flags is None or not drop:
        return flags
    return frozenset(f for f in flags if not f.startswith(drop))


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset | None:
    """The `flags` line of `cpuinfo` as a set, less what `ONEDNN_MAX_CPU_ISA` caps
    (`cap_flags`), or None when it cannot be read (not Linux/x86)."""
    return cap_flags(_read_flags(cpuinfo), max_isa())


@functools.cache
def _read_flags(cpuinfo: str) -> frozenset | None:
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return None
    flags = frozenset(line.partition(":")[2].split())
    return flags or None


def has_native_bfloat16(flags: frozenset | None) -> bool | None:
    """True if these CPU flags include AVX512-BF16 or AMX-BF16; None if the flags are unknown."""
    if flags is None:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_conv_impl(flags: frozenset | None) -> str:
    """The conv lowering for a CPU with these flags: `2d_spatial` on AVX2 without AVX-512 (its
    oneDNN kernels compute the `(kt,1)` 2D convs' filter gradient slowly), else `2d`."""
    if flags is not None and "avx2" in flags and "avx512f" not in flags:
        return "2d_spatial"
    return "2d"


def resolve_conv_impl(impl: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """`impl` itself, or for `auto` the lowering this machine gets (`auto_choices` of its
    devices: `3d` with a GPU, else the CPU's rule)."""
    if impl == "auto":
        return auto_choices(local_devices(), cpu_flags(cpuinfo)).conv_impl
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {('auto', *CONV_IMPLS)}, got {impl!r}")
    return impl


def auto_precision(flags: frozenset | None, gflops_per_step: float) -> str:
    """`bfloat16` on a native-bf16 CPU for a big enough step, else `float32`.

    gflops_per_step: forward GFLOPs of one replica's batch (GFLOPs per clip x batch).
    """
    if has_native_bfloat16(flags) and gflops_per_step >= BF16_MIN_GFLOPS_PER_STEP:
        return "bfloat16"
    return "float32"


@dataclasses.dataclass(frozen=True)
class AutoChoices:
    """What `auto` means on one machine: `conv_impl` (one of CONV_IMPLS) and `precision`
    (`float32`, `bfloat16` or `mixed_float16`)."""
    conv_impl: str
    precision: str


def has_gpu(devices) -> bool:
    """Whether `devices` (`tf.config.PhysicalDevice`s, or their type names such as "GPU")
    include a GPU."""
    return any(getattr(d, "device_type", d) == "GPU" for d in devices)


def auto_choices(devices, flags: frozenset | None, gflops_per_step: float = 0.0) -> AutoChoices:
    """The `auto` choices for a machine with these `devices` and CPU `flags`.

    With a GPU among `devices`: `conv3d` and `mixed_float16`. Otherwise the CPU rules:
    `auto_conv_impl(flags)` and `auto_precision(flags, gflops_per_step)` (forward GFLOPs of
    one replica's batch).
    """
    if has_gpu(devices):
        return AutoChoices(conv_impl="3d", precision="mixed_float16")
    return AutoChoices(conv_impl=auto_conv_impl(flags),
                       precision=auto_precision(flags, gflops_per_step))


def local_devices() -> tuple:
    """This process's physical devices (`tf.config.list_physical_devices()`), read once."""
    return _local_devices()


@functools.cache
def _local_devices() -> tuple:
    import tensorflow as tf  # only here: the rules above are plain Python
    return tuple(tf.config.list_physical_devices())


def describe(flags: frozenset | None) -> str:
    """A one-line account of what the rules see in these flags, for logs and the benchmark."""
    if flags is None:
        return "CPU flags unknown: conv_impl auto = 2d, precision auto = float32"
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512-BF16" if "avx512_bf16" in flags
           else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    bf16 = (f"bfloat16 from {BF16_MIN_GFLOPS_PER_STEP:g} GFLOPs per step"
            if has_native_bfloat16(flags) else "float32")
    isa_cap = max_isa()
    capped = f" (ONEDNN_MAX_CPU_ISA={isa_cap})" if isa_cap else ""
    return (f"{isa} CPU{capped}: conv_impl auto = {auto_conv_impl(flags)}, "
            f"precision auto = {bf16}")
