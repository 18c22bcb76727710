"""Where a step's time goes: TensorFlow profiler op self-times grouped into categories.

`op_breakdown(fn)` traces a few calls of a compiled step with `tf.profiler`, reads the
trace's per-op table (the profiler's `framework_op_stats` tool) and sums each op's self-time
by category: convolution forward / backward, batch norm, layout (transpose, reshape, concat,
slice, pad: the copies the 2D lowering, the gating and the Inception concats add), pooling,
elementwise and the optimizer. Self-times are summed over the inter-op threads, so their
total can exceed the wall time; the shares are what the table is for.
"""
from __future__ import annotations

import collections
import glob
import json
import re
import tempfile
import time

import tensorflow as tf

# First match wins; op types are compared without oneDNN's `_Mkl` / `_MklNative` prefixes.
CATEGORIES = (
    ("conv backward", re.compile(r"Conv.*Backprop|DepthwiseConv2dNativeBackprop")),
    ("conv forward", re.compile(r"^_?(Fused)?(Conv2D|Conv3D|DepthwiseConv2dNative)")),
    ("batch norm", re.compile(r"BatchNorm")),
    ("pooling", re.compile(r"Pool")),
    ("layout", re.compile(r"^(Transpose|Reshape|Concat|Slice|StridedSlice|Pad|Pack|Unpack|"
                          r"Split|Tile|ExpandDims|Squeeze|Identity|MklToTf|TfToMkl)")),
    ("optimizer", re.compile(r"^(ResourceApply|Assign|ReadVariable|VarHandle)")),
    ("reduction", re.compile(r"^(Sum|Mean|BiasAddGrad|Max|Min|Prod|ArgMax)$")),
)
OTHER = "elementwise / other"
_PREFIX = re.compile(r"^_(MklNative|Mkl)")


def category(op_type: str) -> str:
    """The CATEGORIES name of a TF op type (`_MklNativeConv3DBackpropFilterV2` ->
    `conv backward`), or OTHER."""
    bare = _PREFIX.sub("", op_type)
    for name, pattern in CATEGORIES:
        if pattern.search(bare):
            return name
    return OTHER


def parse_op_stats(table: bytes | str) -> list[tuple[str, str, float]]:
    """(op type, op name, total self-time in seconds) rows of a `framework_op_stats` table
    (the profiler's DataTable JSON); the IDLE row is dropped."""
    tables = json.loads(table)
    tables = tables if isinstance(tables, list) else [tables]
    rows = []
    for t in tables:
        ids = [c["id"] for c in t.get("cols", [])]
        if "type" not in ids or "total_self_time" not in ids:
            continue
        i_type, i_name, i_self = ids.index("type"), ids.index("operation"), \
            ids.index("total_self_time")
        for r in t.get("rows", []):
            cells = [c.get("v") for c in r["c"]]
            if cells[i_type] != "IDLE":
                rows.append((cells[i_type], cells[i_name], float(cells[i_self]) / 1e6))
    return rows


def op_breakdown(fn, *, steps: int = 3, warmup: int = 2) -> dict:
    """Profiles `steps` calls of `fn` (after `warmup` untraced calls).

    Returns {"steps", "wall_s_per_step", "op_s_per_step" (summed self-time),
    "categories": {name: seconds per step}, "top_ops": [(op type, seconds per step)] x10}.
    """
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    for _ in range(warmup):
        _block(fn())
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        try:
            for _ in range(steps):
                _block(fn())
        finally:
            wall = time.perf_counter() - start
            tf.profiler.experimental.stop()
        planes = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
        table, ok = plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the TF profiler could not build its op table: {table[:200]!r}")
    rows = parse_op_stats(table)
    by_category = collections.Counter()
    by_type = collections.Counter()
    for op_type, _, seconds in rows:
        by_category[category(op_type)] += seconds / steps
        by_type[_PREFIX.sub("", op_type)] += seconds / steps
    return {"steps": steps, "wall_s_per_step": wall / steps,
            "op_s_per_step": sum(by_category.values()),
            "categories": dict(by_category.most_common()),
            "top_ops": by_type.most_common(10)}


def _block(result):
    for t in tf.nest.flatten(result):
        t.numpy()
