"""`run(main)`: absl's `app.run` for every `python -m d3d_tf.<tool>`, with errors in one line.

absl prints a UsageError after the module doc and the short flag help (160 lines for
`train`), so the reason scrolls away. Here a UsageError, and the library's errors for bad
input (ValueError, FileNotFoundError, FileExistsError: each names the flag, value or file),
print one line, `<tool>: error: <reason>`, and exit with status 1. So does a full disk (an
`OSError` with errno ENOSPC or EDQUOT, or a TensorFlow error whose message says "No space left
on device" / "Disk quota exceeded", also when wrapped in another exception): the line names the
file being written and says what the tool kept (`KEPT_ON_DISK_FULL`). Set D3D_TRACEBACK=1 to
get the full traceback instead. Flag-parsing errors (an unknown flag, a value below its bound) are
absl's own short `FATAL Flags parsing error: ...` line.

Fast and quiet: a tool's module declares its flags from TensorFlow-free modules and imports
TensorFlow (and Keras, and the libraries built on them) inside `main`, so `--help` and a usage
error answer before TensorFlow loads (`python -m d3d_tf.benchmark --parts=cli` times them).
TensorFlow's start-up log lines (oneDNN, CUDA, CPU features) are hidden: before `main`, `run`
arranges that TensorFlow's import drops them (`quiet_tensorflow`), unless the user set
TF_CPP_MIN_LOG_LEVEL or asked for absl's `--verbosity=1` (`-v 1`). `run(main, groups=...)`
prints `--help` grouped by section, with titles (`help_groups`); `--helpfull` still lists every
flag absl knows.
"""
from __future__ import annotations

import contextlib
import errno
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

from absl import app, flags

USER_ERRORS = (app.UsageError, ValueError, FileNotFoundError, FileExistsError)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")

# What each tool has on disk when a write fails for lack of space (docs/failures.md).
KEPT_ON_DISK_FULL = {
    "d3d_tf.prepare": "the finished shards are kept (a shard is renamed to its final name only "
                      "when complete); free space and rerun the same command to write the rest",
    "d3d_tf.train": "the checkpoints saved before are intact; free space and rerun the same "
                    "command to resume from the newest",
    "d3d_tf.distinit_targets": "the finished target shards are kept; free space and rerun the "
                               "same command to write the rest",
}
KEPT_DEFAULT = ("every file under its final name is complete, the previous version or none "
                "(files are written to a temporary name and renamed); free space and rerun")


def tool_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or os.path.basename(sys.argv[0])
    return name.removesuffix(".__main__")


def disk_full(error: BaseException) -> tuple[str | None, str] | None:
    """`(file being written or None, the system's reason)` if `error`, or an exception it was
    raised from or while handling, is a full disk or quota; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            name = error.filename if error.filename is not None else error.filename2
            return (None if name is None else os.fsdecode(name),
                    error.strerror or os.strerror(error.errno))
        message = getattr(error, "message", None)  # a TensorFlow OpError: "PATH; reason"
        if isinstance(message, str) and type(error).__module__.startswith("tensorflow"):
            for line in message.splitlines():
                for reason in DISK_FULL_MESSAGES:
                    if reason in line:
                        path = " ".join(line.split(reason)[0].rstrip("; :").split())
                        return path or None, reason
        error = error.__cause__ or error.__context__
    return None


def error_line(error: BaseException, tool: str | None = None) -> str | None:
    """The one line the tool prints for `error` (see the module doc), or None when `error`
    is a bug or an unexpected failure (its traceback is printed then)."""
    tool = tool or tool_name()
    full = disk_full(error)
    if full is not None:
        path, reason = full
        where = f" while writing {path}" if path else ""
        return f"{tool}: error: {reason}{where}: {KEPT_ON_DISK_FULL.get(tool, KEPT_DEFAULT)}"
    if isinstance(error, USER_ERRORS):
        hint = " (--help lists the flags)" if isinstance(error, app.UsageError) else ""
        return f"{tool}: error: {' '.join(str(error).split())}{hint}"
    return None


# TensorFlow's start-up lines: absl's notice, oneDNN, the CUDA stubs and driver, the CPU features
# (with its second line). TensorFlow 2.21 writes them to file descriptor 2 before its logging is
# set up, so TF_CPP_MIN_LOG_LEVEL does not hide them.
START_UP_LINE = re.compile(
    r"(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:.]+ +\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform|cuda_dnn"
    r"|cuda_fft|cuda_blas|cuda_executor)\.cc:\d+\]"
    r"|To enable the following instructions: )")


@contextlib.contextmanager
def stderr_without_start_up_lines():
    """Captures file descriptor 2 (C++ and Python writes alike) for the block, then writes what
    it caught back to stderr except TensorFlow's start-up lines (`START_UP_LINE`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not START_UP_LINE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, and its device discovery, inside
    `stderr_without_start_up_lines`; hands the module its own loader back afterwards."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with stderr_without_start_up_lines():
            try:
                self.loader.exec_module(module)
                module.config.list_physical_devices()  # the CUDA driver's line comes here
            finally:
                module.__loader__ = module.__spec__.loader = self.loader


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders find it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hides TensorFlow's start-up lines (oneDNN, CUDA, CPU features) when TensorFlow is imported
    later in this process, unless `verbose` (absl's `-v 1`) or the user set
    TF_CPP_MIN_LOG_LEVEL (then TensorFlow logs as it does by default). Everything else written
    to stderr during the import is kept."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


def help_groups(*configs) -> list[tuple[str, list[str]]]:
    """`--help` groups of config dataclasses' flags: `config_flags.flag_groups` of each config
    in order (a tool puts its hand-declared flags in groups of its own beside them)."""
    from d3d_tf.core import config_flags

    return [group for config in configs for group in config_flags.flag_groups(config)]


HELP_ARGS = ("--help", "-help", "-?", "--helpshort", "-helpshort")


def grouped_help(groups, flag_values=flags.FLAGS, doc: str | None = None) -> str:
    """The tool's doc, then its flags under each group's title (aliases beside their flag); the
    main module's flags in no group come last under "Other flags"."""
    main = sys.modules.get("__main__")
    doc = (main.__doc__ if doc is None else doc) or f"USAGE: {tool_name()} [flags]"
    module_flags = flag_values.flags_by_module_dict().get(sys.argv[0], [])
    aliases = {}
    for flag in module_flags:
        if flag.help.startswith("Alias for --"):
            aliases.setdefault(flag.help[len("Alias for --"):].rstrip("."), []).append(flag)
    lines, shown = [doc.strip("\n"), ""], set()
    for title, names in [*groups, ("Other flags", [f.name for f in module_flags])]:
        group = [flag_values[n] for n in names if n in flag_values and n not in shown]
        group += [a for f in group for a in aliases.get(f.name, []) if a.name not in shown]
        if not group:
            continue
        shown |= {f.name for f in group}
        lines.append(f"{title}:")
        flag_values._render_flag_list(group, lines, prefix="  ")  # absl's own layout
        lines.append("")
    lines.append("Try --helpfull to get a list of all flags.")
    return "\n".join(lines)


def run(main, *, groups=None) -> None:
    """`app.run(main)`, printing the errors above as one line and `--help` grouped by `groups`
    ([(title, [flag names])], e.g. `help_groups(...)`) when given (see the module doc)."""
    def parse(argv):
        args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
        if groups is not None and any(a in HELP_ARGS for a in args):
            print(grouped_help(groups))
            sys.exit(1)  # absl's status for --help
        return app.parse_flags_with_usage(argv)

    def wrapped(argv):
        quiet_tensorflow(flags.FLAGS["verbosity"].value >= 1)
        try:
            return main(argv)
        except Exception as e:  # anything but a user error or a full disk is re-raised
            line = error_line(e)
            if line is None or os.environ.get("D3D_TRACEBACK") == "1":
                raise
            print(line, file=sys.stderr)
            sys.exit(1)

    app.run(wrapped, flags_parser=parse)
