"""train / export / evaluate / predict refuse non-positive sizes and counts at flag parsing
(before any model loads), evaluate refuses an empty glob, and train a batch that the replicas
do not divide: each with one line naming the flag."""
import os
import subprocess
import sys

import export_helpers as H

sys.path.insert(0, os.path.dirname(__file__))
import train_fixtures

SCRIPTS = os.path.join(H.REPO, "tests", "scripts")


def _run(*args):
    proc = subprocess.run([sys.executable, *args], cwd=H.REPO, env=H.env(),
                          capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and not ln.startswith(("WARNING: All log", "I0000", "E0000", "W0000"))]
    return proc.returncode, lines


_EVALUATE_BOUNDS = """
import copy
from absl import flags
from d3d_tf import evaluate  # noqa: F401 (defines the flags)
for f in sorted(flags.FLAGS.get_flags_for_module("d3d_tf.evaluate"), key=lambda f: f.name):
    if f.flag_type() != "int":
        continue
    parsed = copy.deepcopy(flags.FLAGS)  # parsing happens before main(): no model loads
    try:
        parsed(["evaluate", f"--{f.name}=0"])
    except flags.IllegalFlagValueError as e:  # an alias names the flag it stands for
        alias = f.help.startswith("Alias for --")
        print(f.name, "|", f.help[12:-1] if alias else f.name, "|", str(e).splitlines()[0])
    else:
        print(f.name, "|", f.name, "| ACCEPTED")
"""


def test_every_integer_flag_of_evaluate_must_be_positive():
    # In a subprocess: importing d3d_tf.evaluate here would collide with other CLIs' flags.
    proc = subprocess.run([sys.executable, "-c", _EVALUATE_BOUNDS], cwd=H.REPO, env=H.env(),
                          capture_output=True, text=True, timeout=900, check=True)
    results = {name: (flag, message) for name, flag, message in
               (ln.split(" | ", 2) for ln in proc.stdout.splitlines() if " | " in ln)}
    assert {"num_frames", "eval_clips", "frame_stride", "crop_size", "batch_size",
            "eval_crops", "resize_short_side", "plot_top", "ava_max_boxes"} <= set(results)
    assert results["num_clips"][0] == "eval_clips" and results["num_crops"][0] == "eval_crops"
    for name, (flag, message) in results.items():
        assert message.startswith(f"flag --{flag}=0: "), (name, message)


def test_predict_flag_bounds_are_one_line_before_any_model_loads(tmp_path):
    missing = str(tmp_path / "no_model")  # never opened: parsing fails first
    for name in ("top_k", "num_clips", "frame_stride", "resize_short_side", "num_threads"):
        code, lines = _run("-m", "d3d_tf.predict", "clip.mp4", f"--export_path={missing}",
                           f"--{name}=0")
        assert code != 0 and lines[0].startswith(
            f"FATAL Flags parsing error: flag --{name}=0: "), (name, lines)
        assert not any(missing in ln or "Traceback" in ln for ln in lines), lines


# The values docs/failures.md names. Each is parsed in one subprocess per CLI (importing two
# CLIs in one process would collide on their flags); one real run per CLI checks the output.
_BAD_VALUES = {
    "train": ["--checkpoint_every=0", "--log_every=0", "--num_frames=0",
              "--learning_rate=-0.1", "--frame_stride=0", "--train_steps=0",
              "--max_checkpoints=0", "--batch_size=0", "--crop_size=0"],
    "export": ["--num_frames=0", "--crop_size=0", "--top_k=0", "--version=0",
               "--calibration_clips=0"],
}
_PARSE_EACH = """
import copy, sys
from absl import flags
from d3d_tf import {module}  # noqa: F401 (defines the flags)
for value in sys.argv[1:]:
    try:
        copy.deepcopy(flags.FLAGS)(["{module}", value])
    except flags.IllegalFlagValueError as e:
        print(value, "|", str(e).splitlines()[0])
    else:
        print(value, "| ACCEPTED")
"""


def test_train_and_export_flag_bounds_are_refused_at_parsing():
    for module, values in _BAD_VALUES.items():
        target = "d3d_tf.export.__main__" if module == "export" else f"d3d_tf.{module}"
        script = _PARSE_EACH.replace("from d3d_tf import {module}", f"import {target}")
        proc = subprocess.run([sys.executable, "-c", script.format(module=module), *values],
                              cwd=H.REPO, env=H.env(), capture_output=True, text=True,
                              timeout=900, check=True)
        results = dict(ln.split(" | ", 1) for ln in proc.stdout.splitlines() if " | " in ln)
        assert set(results) == set(values), proc.stdout
        for value, message in results.items():
            assert message.startswith(f"flag {value}: "), (module, value, message)


def test_train_and_export_print_the_bound_first(tmp_path):
    for module, args in (("d3d_tf.train", ["--train_data=x-*.tfrecord", "--checkpoint_every=0"]),
                         ("d3d_tf.export", [f"--out_dir={tmp_path / 'out'}", "--num_frames=0"])):
        code, lines = _run("-m", module, f"--model_dir={tmp_path / 'run'}", *args)
        assert code != 0 and lines[0].startswith(
            f"FATAL Flags parsing error: flag {args[-1]}: "), (module, lines)
        assert not any("Traceback" in ln for ln in lines), (module, lines)
    assert not os.listdir(tmp_path)  # nothing written


def test_evaluate_on_an_empty_glob_is_one_line(tmp_path):
    glob = str(tmp_path / "val-*.tfrecord")
    code, lines = _run("-m", "d3d_tf.evaluate", f"--model_dir={H.model_dir()}",
                       f"--data={glob}", f"--out_dir={tmp_path / 'out'}")
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert code == 1 and errors == [(
        f"d3d_tf.evaluate: error: --data: no TFRecord files match '{glob}' "
        "(--help lists the flags)")], lines
    assert not any("evaluating" in ln for ln in lines), lines  # before any model loads
    assert not os.path.exists(tmp_path / "out")


def test_batch_not_divisible_by_the_replicas_is_one_line(tmp_path):
    data = train_fixtures.write_dataset(str(tmp_path / "data"), videos=4, frames=4, size=16,
                                        with_flow=False)
    code, lines = _run(os.path.join(SCRIPTS, "two_cpu_devices.py"), "d3d_tf.train",
                       f"--model_dir={tmp_path / 'run'}", f"--train_data={data}",
                       "--strategy=mirrored", "--batch_size=3", "--depth_multiplier=0.1",
                       "--num_frames=2", "--crop_size=16", "--train_steps=1")
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert code == 1 and errors == [(
        "d3d_tf.train: error: --batch_size=3 (the global batch) is not divisible by the 2 "
        "replicas of the strategy: use a multiple of 2 (per-replica batch x replicas)")], lines
    assert not any("Traceback" in ln for ln in lines), lines
    assert not os.path.exists(tmp_path / "run" / "ckpt")
