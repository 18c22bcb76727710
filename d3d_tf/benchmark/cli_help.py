"""Seconds each tool takes to answer `--help`: `python -m d3d_tf.benchmark --parts=cli`.

Every `python -m d3d_tf.<tool>` is found from the package's files (a module with a
`__main__` block that calls `cli.run` or `app.run`) and started as a subprocess, `--help` and a
misspelled flag each, `repeats` times; the median wall seconds are reported (the target: under
2 s, TensorFlow imported only after the flags are parsed; `d3d_tf.core.cli`).
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

import d3d_tf

PACKAGE_DIR = os.path.dirname(os.path.abspath(d3d_tf.__file__))
_RUNS = re.compile(r'if __name__ == "__main__":[\s\S]*\b(cli|app)\.run\(')
MISSPELLED = "--no_such_flag_xyz"


def tools(package_dir: str = PACKAGE_DIR) -> list[str]:
    """The module names `python -m` runs as tools, sorted (a package by its `__main__.py`)."""
    out = []
    for root, _, files in os.walk(package_dir):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                if not _RUNS.search(f.read()):
                    continue
            rel = os.path.relpath(path, os.path.dirname(package_dir))[:-3].split(os.sep)
            out.append(".".join(rel[:-1] if rel[-1] == "__main__" else rel))
    return sorted(out)


def answer_seconds(tool: str, args: tuple[str, ...] = ("--help",), timeout_s: float = 120,
                   ) -> tuple[float, int]:
    """(wall seconds, exit status) of `python -m tool ARGS` as a user starts it."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", tool, *args], capture_output=True,
                          timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode


def run_cli_benchmark(names=None, repeats: int = 3, log=print) -> list[dict]:
    """[{"tool", "help_s", "misspelled_s"}]: median seconds over `repeats` runs of each tool."""
    results = []
    for tool in names or tools():
        times = {}
        for key, args in (("help_s", ("--help",)), ("misspelled_s", (MISSPELLED,))):
            times[key] = statistics.median(answer_seconds(tool, args)[0] for _ in range(repeats))
        log(f"cli {tool}: --help {times['help_s']:.2f} s, {MISSPELLED} "
            f"{times['misspelled_s']:.2f} s")
        results.append({"tool": tool, **times})
    return results
