"""Per-CPU defaults: how convolutions run (`conv_impl="auto"`) and whether training computes
in bfloat16 (`precision="auto"`).

Both choices leave the variables and the function unchanged; they only change speed (and,
for bfloat16, rounding). They are taken from the CPU's feature flags (`/proc/cpuinfo`) by
rules that follow the benchmark's measurements on each CPU type the project has met (README
"Performance" has the tables):

* conv lowering: plain `conv3d` on x86 CPUs with AVX2 but no AVX-512; the 2D lowering on
  AVX-512 CPUs and on unknown ones (no flags: not Linux, not x86), where TFLite and XNNPACK
  need it anyway.
* bfloat16: only where the CPU computes it natively (AVX512-BF16 or AMX; elsewhere TensorFlow
  falls back to Eigen kernels far slower than float32), and only for train steps of at least
  `BF16_MIN_GFLOPS_PER_STEP` forward GFLOPs per replica: smaller steps (narrow networks,
  small clips) gained nothing from it.

An explicit value (`conv_impl="2d"`, `precision="float32"`) always overrides the rule.
"""
from __future__ import annotations

import functools

CONV_IMPLS = ("3d", "2d", "2d_all")
PRECISIONS = ("auto", "float32", "bfloat16")
# Forward GFLOPs per replica and train step from which bfloat16 is chosen on a native-bf16 CPU.
BF16_MIN_GFLOPS_PER_STEP = 9.0


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset | None:
    """The `flags` line of `cpuinfo` as a set, or None when it cannot be read (not Linux/x86)."""
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
    """The conv lowering for a CPU with these flags: `3d` on AVX2 without AVX-512, else `2d`."""
    if flags is not None and "avx2" in flags and "avx512f" not in flags:
        return "3d"
    return "2d"


def resolve_conv_impl(impl: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """`impl` itself, or for `auto` the lowering this machine's CPU gets."""
    if impl == "auto":
        return auto_conv_impl(cpu_flags(cpuinfo))
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


def describe(flags: frozenset | None) -> str:
    """A one-line account of what the rules see in these flags, for logs and the benchmark."""
    if flags is None:
        return "CPU flags unknown: conv_impl auto = 2d, precision auto = float32"
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512-BF16" if "avx512_bf16" in flags
           else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    bf16 = (f"bfloat16 from {BF16_MIN_GFLOPS_PER_STEP:g} GFLOPs per step"
            if has_native_bfloat16(flags) else "float32")
    return f"{isa} CPU: conv_impl auto = {auto_conv_impl(flags)}, precision auto = {bf16}"
