"""The commands the docs show still work: every `python -m d3d_tf.<tool>` and `make <target>`
in README.md, docs/*.md and export/README.md names a tool that exists, flags that tool defines
(and shows in its `--help`), flagfiles that exist with flags the tool defines, and Makefile
targets that exist. Placeholders in values (DIR, <model_dir>, '...') are fine: only flag names
are checked. The flags of every tool come from one subprocess that imports the CLI modules one
after another, each with a clean flag registry."""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT)
                             for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
        "export/README.md"]
# absl's own flags, accepted by every `app.run` tool.
ABSL_FLAGS = {"help", "helpshort", "helpfull", "helpxml", "flagfile", "undefok", "only_check_args",
              "pdb", "pdb_post_mortem", "run_with_pdb", "run_with_profiling", "profile_file",
              "use_cprofile_for_profiling", "logtostderr", "alsologtostderr", "log_dir",
              "verbosity", "v", "stderrthreshold", "showprefixforinfo", "logger_levels"}
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&", "#"}
PYTHON_M = re.compile(r"python3?\s+-m\s+(d3d_tf(?:\.\w+)+)")
FLAG = re.compile(r"^\[?--([A-Za-z_][A-Za-z0-9_]*)(=.*)?\]?$")


@dataclass
class Command:
    doc: str        # file, relative to the repository root
    line: int       # line of the command's start
    text: str       # the command, continuation lines joined

    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.text[:120]}"


def _logical_lines(lines, start):
    """(line number, text) with backslash continuations joined."""
    out, buf, first = [], "", None
    for i, raw in enumerate(lines, start=start):
        s = raw.rstrip()
        if first is None:
            first = i
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        out.append((first, buf + s))
        buf, first = "", None
    if buf:
        out.append((first, buf))
    return out


def extract(doc: str) -> list[Command]:
    """The `python -m d3d_tf.*` and `make` commands of one markdown file: lines of fenced code
    blocks and inline code spans."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, prose, fence = [], [], None
    block, block_start = [], 0
    for i, line in enumerate(lines, start=1):
        if line.lstrip().startswith("```"):
            if fence is None:
                fence, block, block_start = line.lstrip()[:3], [], i + 1
            else:
                fence = None
                for n, text in _logical_lines(block, block_start):
                    text = text.strip()
                    text = text.removeprefix("$ ")
                    if PYTHON_M.search(text) or text.startswith("make "):
                        found.append(Command(doc, n, text))
            prose.append("")
            continue
        if fence is None:
            prose.append(line)
        else:
            block.append(line)
            prose.append("")
    text = "\n".join(prose)
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(m.group(1).replace("\\\n", " ").split())
        if PYTHON_M.search(span) or re.match(r"make [a-z]", span):
            found.append(Command(doc, text.count("\n", 0, m.start()) + 1, span))
    return found


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in extract(doc)]


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:   # an unbalanced quote around a placeholder
        return text.split()


def tool_calls(text: str) -> list[tuple[str, list[str]]]:
    """[(module, its argument tokens)] of the `python -m d3d_tf.*` calls in one command."""
    calls = []
    tokens = _tokens(text)
    for i, tok in enumerate(tokens):
        m = re.match(r"d3d_tf(\.\w+)+", tokens[i + 1]) if i + 1 < len(tokens) else None
        if tok == "-m" and m:
            module = m.group(0)
            args = []
            for arg in tokens[i + 2:]:
                if arg in SHELL_STOP or arg.startswith(("|", ">", "#")) or arg.endswith(";"):
                    break
                if re.fullmatch(r"(\S*/)?python3?", arg):
                    break
                args.append(arg)
            calls.append((module, args))
    return calls


def flag_names(args) -> list[str]:
    """Names of the `--flag` / `--flag=value` arguments (values, placeholders included, are
    not looked at); `[--flag=...]` counts too."""
    return [m.group(1) for a in args if (m := FLAG.match(a))]


def make_targets(text: str) -> list[str]:
    tokens = _tokens(text)
    args = []
    for tok in tokens[1:]:
        if tok in SHELL_STOP:
            break
        args.append(tok)
    return [t for t in args if "=" not in t and not t.startswith("-")]


def makefile() -> tuple[set[str], list[str]]:
    """(targets, recipe lines with continuations joined) of the Makefile."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        lines = f.read().split("\n")
    targets = {m.group(1) for line in lines
               if (m := re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line))}
    recipes = [text.strip() for _, text in _logical_lines(lines, 1) if text.startswith("\t")]
    return targets, recipes


# Runs each tool's module as `python -m` does (as __main__, so flags defined only when run as a
# tool count), with `app.run` / `cli.run` replaced by a no-op: the flags are defined, nothing
# runs. The flags each tool defined are removed again before the next tool, and the CLI modules
# a tool imported are forgotten, so each tool starts from absl's flags alone.
_PROBE = r'''
import importlib.util, json, runpy, sys
from absl import app, flags
import absl.logging  # noqa: F401  (its flags are every tool's)
import tensorflow  # noqa: F401  (its own flags: not a tool's)
from d3d_tf.core import cli
FLAGS = flags.FLAGS
app.run = cli.run = lambda *a, **k: None
tools = sys.argv[1:]
out = {}
for name in tools:
    for m in [m for m in sys.modules if m in tools]:
        del sys.modules[m]
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        spec = None
    if spec is None:
        out[name] = {"error": "no such module"}
        continue
    if spec.submodule_search_locations is not None:       # a package: python -m runs __main__
        spec = importlib.util.find_spec(name + ".__main__")
        if spec is None:
            out[name] = {"error": "a package without __main__ (not runnable with -m)"}
            continue
    before = set(FLAGS)
    sys.argv = [spec.origin]                 # absl names the main module by its file
    runpy.run_module(name, run_name="__main__", alter_sys=True)
    new = set(FLAGS) - before
    own = [f.name for f in FLAGS.flags_by_module_dict().get(spec.origin, [])]
    out[name] = {"flags": sorted(new), "bool": sorted(n for n in new if FLAGS[n].boolean),
                 "own": sorted(set(own)), "help": FLAGS.main_module_help()}
    for n in new:
        delattr(FLAGS, n)
print("JSON" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def tools():
    """{module: {"flags": [...], "bool": [...], "help": text} or {"error": ...}} for every tool
    the docs or the Makefile call."""
    modules = {m for c in all_commands() for m, _ in tool_calls(c.text)}
    modules |= {m for r in makefile()[1] for m, _ in tool_calls(r)}
    r = subprocess.run([sys.executable, "-c", _PROBE, *sorted(modules)], capture_output=True,
                       text=True, cwd=ROOT, timeout=600, check=False,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.split("JSON", 1)[1])


def _in_help(name, info) -> bool:
    return f"--{name}:" in info["help"] or f"--[no]{name}:" in info["help"]


def _flagfile_lines(path: str, seen=()) -> list[str]:
    """The `--flag` lines of a flagfile with its `--flagfile=` includes (paths from the
    repository root) expanded in place, as the tools read them."""
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip().startswith("--")]
    out = []
    for line in lines:
        if line.startswith("--flagfile=") and path not in seen:
            out += _flagfile_lines(os.path.join(ROOT, line.split("=", 1)[1]), (*seen, path))
        else:
            out.append(line)
    return out


TASKS = ("classify", "finetune", "distill", "distinit", "ava", "flow_loss", "cnn_flow")


def _task_flags(module, args) -> set:
    """The flags `python -m d3d_tf.train --task=T --help` adds for the command's --task T (the
    method's own section)."""
    task = next((a.split("=", 1)[1] for a in args if a.startswith("--task=")), None)
    if module != "d3d_tf.train" or task is None:
        return set()
    from d3d_tf import methods
    from d3d_tf.core import config_flags
    fields = {f.name: f for f, _ in config_flags.flag_fields(methods.TrainConfig)}
    names = {n for title, group in config_flags.flag_groups(methods.TrainConfig)
             if title == methods.section_of(task) for n in group}
    return names | {a for n in names for a in fields[n].metadata.get("aliases", ())}


def _check(module, args, tools, where) -> list[str]:
    """Problems of one call: unknown tool, flags it does not define or does not show in its
    --help, flagfiles missing or with such flags."""
    info = tools.get(module, {"error": "not probed"})
    if "error" in info:
        return [f"{where}: python -m {module}: {info['error']}"]
    known = set(info["flags"]) | ABSL_FLAGS
    bools = set(info["bool"])
    problems = []
    for name in flag_names(args):
        if name in known or (name.startswith("no") and name[2:] in bools):
            base = name if name in known else name[2:]
            if base in info["flags"] and not _in_help(base, info) \
                    and base not in _task_flags(module, args):
                problems.append(f"{where}: --{name} is not in `{module} --help`")
            continue
        problems.append(f"{where}: python -m {module} has no flag --{name}")
    for a in args:
        path = a.split("=", 1)[1] if a.startswith("--flagfile=") else None
        if path is None or not path.startswith("configs/"):
            continue   # a user's own flagfile
        # A shell variable in the path (a loop over thresholds, splits): every file it can name.
        matches = sorted(glob.glob(os.path.join(ROOT, re.sub(r"\$\{?\w+\}?", "*", path))))
        if not matches:
            problems.append(f"{where}: no flagfile {path}")
            continue
        for full in matches:
            lines = _flagfile_lines(full)
            problems += [f"{where}: {os.path.relpath(full, ROOT)}: python -m {module} has no "
                         f"flag --{n}" for n in flag_names(lines)
                         if n not in known and not (n.startswith("no") and n[2:] in bools)]
    return problems


def test_the_docs_show_commands():
    docs = {c.doc for c in all_commands()}
    assert {"README.md", "docs/training.md", "docs/export.md", "export/README.md"} <= docs
    calls = [(m, flag_names(a)) for c in all_commands() for m, a in tool_calls(c.text)]
    assert len(calls) > 80 and sum(len(f) for _, f in calls) > 300


def test_every_documented_tool_and_flag_exists(tools):
    problems = []
    for c in all_commands():
        for module, args in tool_calls(c.text):
            problems += _check(module, args, tools, c.where())
    assert not problems, "\n".join(problems)


def test_every_makefile_recipe_calls_tools_with_their_flags(tools):
    problems = [p for recipe in makefile()[1] for module, args in tool_calls(recipe)
                for p in _check(module, args, tools, f"Makefile: {recipe[:80]}")]
    assert not problems, "\n".join(problems)


def test_every_documented_make_target_exists():
    targets = makefile()[0]
    missing = [f"{c.where()}: no Makefile target {t}" for c in all_commands()
               if c.text.startswith("make ") for t in make_targets(c.text) if t not in targets]
    assert not missing, "\n".join(missing)


def test_the_checks_catch_stale_commands(tools, tmp_path):
    """The checks above can fail: a renamed flag, a tool that is gone, a missing target."""
    bad = Command("x.md", 1, "python -m d3d_tf.export --model_dir=DIR --no_such_flag=1 "
                  "--format=<fmt> ... | tee log")
    [(module, args)] = tool_calls(bad.text)
    assert module == "d3d_tf.export" and flag_names(args) == ["model_dir", "no_such_flag",
                                                            "format"]
    assert _check(module, args, tools, "x") == [
        "x: python -m d3d_tf.export has no flag --no_such_flag"]
    assert "no such module" in _check("d3d_tf.no_such_tool", [], {"d3d_tf.no_such_tool": {
        "error": "no such module"}}, "x")[0]
    assert make_targets("make demo SEEDS=3") == ["demo"]
    doc = tmp_path / "d.md"
    doc.write_text("Run `make demo` or:\n\n```\n$ python -m d3d_tf.train \\\n"
                   "    --flagfile=configs/nope.flags --nofoo\n```\n")
    global ROOT
    old, ROOT = ROOT, str(tmp_path)
    try:
        found = extract("d.md")
    finally:
        ROOT = old
    assert [(c.line, c.text) for c in found] == [
        (4, "python -m d3d_tf.train      --flagfile=configs/nope.flags --nofoo"),
        (1, "make demo")]
    problems = _check("d3d_tf.train", tool_calls(found[0].text)[0][1], tools, "d")
    assert problems == ["d: python -m d3d_tf.train has no flag --nofoo",
                        "d: no flagfile configs/nope.flags"]


def test_every_tool_prints_its_help_with_the_documented_flags(tools):
    """The cheap run: `--help` of every documented tool (rendered in the probing subprocess,
    the text `app.run` prints for the tool's own flags)."""
    for module, info in tools.items():
        assert "error" not in info, (module, info)
        assert info["own"], f"{module} defines no flags of its own"
        # train lists a method's own flags under `--task=T --help` (the other tasks' are off
        # its --help): each must be one task's.
        by_task = set().union(*(_task_flags(module, [f"--task={t}"]) for t in TASKS))
        hidden = [name for name in info["flags"] if not _in_help(name, info)
                  and name not in by_task]
        assert not hidden, f"{module} --help does not list {hidden}"


def test_a_documented_help_command_runs():
    """`python -m d3d_tf.train --helpfull` (docs/training.md) as the user runs it: it only
    prints (and exits with absl's status for a help flag, 1)."""
    [cmd] = [c for c in all_commands() if "d3d_tf.train --helpfull" in c.text]
    [(module, args)] = tool_calls(cmd.text)
    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, check=False,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "--train_data:" in r.stdout and "--flagfile:" in r.stdout


def test_export_md_states_what_a_wrong_export_path_does(tools, tmp_path):
    """docs/export.md's exit statuses of `predict` for a missing / wrong model, as run."""
    with open(os.path.join(ROOT, "docs", "export.md")) as f:
        text = " ".join(f.read().split())
    m = re.search(r"Without `--(\w+)` the tool exits with status (\d); a wrong `--(\w+)` "
                  r"\([^)]*\) prints `([^`]*)` and exits with status (\d)", text)
    assert m, "docs/export.md no longer says what predict does without / with a wrong model"
    flag, missing_status, flag2, message, wrong_status = m.groups()
    assert flag == flag2 and flag in tools["d3d_tf.predict"]["flags"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-m", "d3d_tf.predict", "a.mp4"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300, check=False, env=env)
    assert r.returncode == int(missing_status) and f"--{flag} is required" in r.stderr
    r = subprocess.run([sys.executable, "-m", "d3d_tf.predict", "a.mp4",
                        f"--{flag}={tmp_path / 'no_model'}"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300, check=False, env=env)
    assert r.returncode == int(wrong_status), r.stderr[-2000:]
    assert message.split("<")[0] in r.stderr
