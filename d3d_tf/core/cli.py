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
TensorFlow's start-up log lines (oneDNN, CUDA, CPU features) are hidden: `run` sets
TF_CPP_MIN_LOG_LEVEL=2 before `main`, unless the user set it or asked for absl's
`--verbosity=1` (`-v 1`). `run(main, groups=...)` prints `--help` grouped by section, with
titles (`help_groups`); `--helpfull` still lists every flag absl knows.
"""
from __future__ import annotations

import errno
import os
import sys

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


def quiet_tensorflow(verbose: bool = False) -> None:
    """Hides TensorFlow's start-up log lines (TF_CPP_MIN_LOG_LEVEL=2: C++ INFO and WARNING),
    unless `verbose` or the user set TF_CPP_MIN_LOG_LEVEL. Call it before TensorFlow is imported:
    the level is read once, at import."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def help_groups(*configs, extra=()) -> list[tuple[str, list[str]]]:
    """`--help` groups of config dataclasses' flags: `config_flags.flag_groups` of each config
    in order, then `extra` [(title, [flag names])] (a tool's hand-declared flags)."""
    from d3d_tf.core import config_flags

    groups = []
    for config in configs:
        groups += config_flags.flag_groups(config)
    return groups + [(title, list(names)) for title, names in extra]


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
