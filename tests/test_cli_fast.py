"""Every tool parses its flags and answers `--help` or a misspelled flag before TensorFlow is
imported (so in well under 2 s: `python -m d3d_tf.benchmark --parts=cli` times it), and hides
TensorFlow's start-up log lines unless asked."""
import json
import os
import subprocess
import sys

from d3d_tf.benchmark import cli_help
from d3d_tf.core import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs each tool as `python -m` does (its module as __main__), once with --help and once with a
# misspelled flag, and notes what the process had imported when the tool exited; each tool's
# flags are removed again before the next one.
_PROBE = r'''
import contextlib, importlib.util, io, json, runpy, sys
from absl import app, flags
import absl.logging  # noqa: F401  (its flags are every tool's)
app.define_help_flags()
FLAGS = flags.FLAGS
out = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(name + ".__main__")
    for arg in ("--help", "--no_such_flag_xyz"):
        before, stdout, stderr = set(FLAGS), io.StringIO(), io.StringIO()
        sys.argv = [spec.origin, arg]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code
            else:
                code = None
        heavy = sorted(m for m in ("tensorflow", "keras", "torch") if m in sys.modules)
        out[f"{name} {arg}"] = {"code": code, "heavy": heavy, "stdout": stdout.getvalue(),
                                "stderr": stderr.getvalue()}
        for n in set(FLAGS) - before:
            delattr(FLAGS, n)
print("JSON" + json.dumps(out))
'''


def test_every_tool_answers_help_and_a_misspelled_flag_before_importing_tensorflow():
    tools = cli_help.tools()  # every tool, benchmark.gpu included
    assert {"d3d_tf.evaluate", "d3d_tf.export", "d3d_tf.convert_weights", "d3d_tf.predict",
            "d3d_tf.models.summary", "d3d_tf.benchmark", "d3d_tf.prepare", "d3d_tf.demo",
            "d3d_tf.demo.distinit"} <= set(tools)
    r = subprocess.run([sys.executable, "-c", _PROBE, *tools], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = json.loads(r.stdout.split("JSON", 1)[1])
    for tool in tools:
        shown, wrong = runs[f"{tool} --help"], runs[f"{tool} --no_such_flag_xyz"]
        assert shown["code"] == 1 and "--" in shown["stdout"], (tool, shown)
        assert wrong["code"] == 1 and "no_such_flag_xyz" in wrong["stderr"], (tool, wrong)
        assert shown["heavy"] == [] and wrong["heavy"] == [], (tool, shown["heavy"])


def test_tensorflow_start_up_lines_are_hidden_unless_asked(monkeypatch):
    # A tool that imports TensorFlow in main, then stops with a usage error: only that line.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "d3d_tf.data_service", "--worker"], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    line = ("d3d_tf.data_service: error: --worker needs --dispatcher_address=HOST:PORT "
            "(--help lists the flags)")
    assert r.stderr.splitlines() == [line]
    assert cli.START_UP_LINE.match("I0000 00:00:1796619278.921730    9001 port.cc:153] oneDNN")
    assert not cli.START_UP_LINE.match("I0000 00:00:17.9    9001 trainer.py:12] step 3")
    # -v 1, or TF_CPP_MIN_LOG_LEVEL set by the user: TensorFlow's own behaviour.
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    before = list(sys.meta_path)
    cli.quiet_tensorflow(verbose=True)
    assert sys.meta_path == before
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cli.quiet_tensorflow()
    assert sys.meta_path == before


def test_benchmark_cli_part_times_a_tool():
    r = subprocess.run([sys.executable, "-m", "d3d_tf.benchmark", "--parts=cli", "--smoke",
                        "--cli_tools=d3d_tf.probe_report"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, check=True)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("d3d_tf.probe_report"))
    help_s, misspelled_s = (float(v) for v in row.split()[1:])
    assert 0 < help_s < 60 and 0 < misspelled_s < 60, row


def test_help_is_grouped_by_section_and_old_flag_names_stay_aliases():
    r = subprocess.run([sys.executable, "-m", "d3d_tf.evaluate", "--help"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300, check=False)
    out = r.stdout
    titles = ["Models:", "General:", "Clip (default: the model's input T and H):", "Reading:",
              "AVA (--task=ava):"]
    where = [out.index(f"\n{t}\n") for t in titles]
    assert where == sorted(where), out
    clip = out[where[2]:where[3]]
    assert all(f"--{n}:" in clip for n in ("num_frames", "crop_size", "frame_stride",
                                            "resize_short_side")), clip
    assert "--num_clips: Alias for --eval_clips." in out[where[1]:where[2]]
    assert "logtostderr" not in out and "--helpfull" in out
    full = subprocess.run([sys.executable, "-m", "d3d_tf.evaluate", "--helpfull"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert "--[no]logtostderr" in full.stdout and "--eval_crops" in full.stdout
