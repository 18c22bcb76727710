"""Independent command-line runs of one test, started side by side.

Each `python -m d3d_tf.<tool>` spends seconds importing TensorFlow, mostly on one core; two
runs that do not depend on each other take the time of one on a machine with two cores.
"""
from __future__ import annotations

import subprocess


def run_side_by_side(commands, *, envs=None, timeout=600, **popen_kwargs):
    """Starts every command of `commands` (argument lists) at once and waits for all.

    envs: one environment per command (default: `popen_kwargs`' env, or this process's);
    popen_kwargs: passed to every `subprocess.Popen` (cwd, env).
    Returns their `subprocess.CompletedProcess` (stdout and stderr as text) in order.
    """
    if envs is None:
        envs = [popen_kwargs.pop("env", None)] * len(commands)
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, **popen_kwargs)
             for command, env in zip(commands, envs, strict=True)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done
