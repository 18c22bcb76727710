"""The demos' stage runner: a stage is one printed `python -m d3d_tf.<tool>` command.

A finished stage leaves `<out_dir>/stages/<stage>.done` holding its command and wall time;
`run_stage` skips a stage whose marker exists, so a rerun reuses the finished work. Used by
`d3d_tf.demo.run` and `d3d_tf.demo.distinit`; it defines no flags, so both can import it.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import subprocess
import sys
import time


@dataclasses.dataclass
class Stage:
    name: str
    command: list
    stdout: str | None = None  # file that receives the command's standard output


def python_module(module, *args):
    """The command line of `python -m d3d_tf.<module> args...` with this interpreter."""
    return [sys.executable, "-m", f"d3d_tf.{module}", *args]


def marker_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, "stages", f"{name}.done")


def run_stage(out_dir: str, stage: Stage) -> float:
    """Runs `stage` unless its marker exists; returns its wall time in seconds (0 if skipped)."""
    marker = marker_path(out_dir, stage.name)
    pretty = " ".join(shlex.quote(str(c)) for c in stage.command)
    if os.path.exists(marker):
        print(f"[demo] {stage.name}: done before, skipping ({marker})", flush=True)
        return 0.0
    print(f"\n[demo] ===== {stage.name} =====\n[demo] $ {pretty}", flush=True)
    start = time.time()
    if stage.stdout:
        with open(stage.stdout, "w") as f:
            result = subprocess.run(stage.command, stdout=f, check=False)
    else:
        result = subprocess.run(stage.command, check=False)
    if result.returncode != 0:
        sys.exit(f"[demo] stage {stage.name!r} failed (exit {result.returncode}): {pretty}\n"
                 "Fix the problem and rerun the demo: finished stages are reused.")
    seconds = time.time() - start
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with open(marker, "w") as f:
        json.dump({"command": pretty, "seconds": seconds}, f)
    print(f"[demo] {stage.name}: finished in {seconds:.0f} s", flush=True)
    return seconds


def stage_times(out_dir: str) -> list[tuple[str, float]]:
    """(stage, wall seconds) of every finished stage of `out_dir`, in the order they finished;
    a stage reused on a rerun keeps the time of the run that did it."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "stages", "*.done")),
                       key=os.path.getmtime):
        try:
            with open(path) as f:
                seconds = float(json.load(f).get("seconds", 0.0))
        except (OSError, ValueError, AttributeError):
            seconds = 0.0
        rows.append((os.path.basename(path)[:-len(".done")], seconds))
    return rows
