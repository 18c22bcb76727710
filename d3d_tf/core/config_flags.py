"""absl flags derived from a config dataclass: one declaration per setting.

A CLI declares nothing by hand. Each field of its config dataclass becomes a flag of the same
name, type and default; the help text and the allowed values come from the field's metadata:

    @dataclasses.dataclass
    class ProbeConfig:
        model_dir: str = dataclasses.field(metadata={"help": "Run or model directory."})
        decoder: str = dataclasses.field(default="pwc", metadata={
            "help": "Flow decoder.", "choices": ("simple", "spatial", "pwc")})
        endpoints: tuple = dataclasses.field(default=("3A",), metadata={"help": "..."})

    config_flags.define_flags(ProbeConfig)          # in the CLI module, at import
    config = config_flags.from_flags(ProbeConfig)   # in main(), after parsing

Types: bool, int, float, str (an enum when `choices` is given) and tuple (a comma-separated
list; the item type is `metadata["item"]`, else that of the default's first item, else str).
`metadata["min"]` is a lower bound (checked at parse time and by `check`). `X | None` fields
default to None. A field without a default is required: `from_flags` raises
ValueError naming the flag when it is missing. `metadata["flag"] = False` keeps a field off the
command line (set in code only).

Sections: a field declared with `section(ClipConfig, "Clip")` holds a nested dataclass whose
fields are flags too, grouped under the title in `--help` (`flag_groups`). Flag names stay
flat (the leaf field's name), so one name means one setting in every tool that shares the
section; a name used twice in one tree is a TypeError. `define_flags(cls, defaults={...})` sets
a tool's own default for a shared field without declaring it again.
"""
from __future__ import annotations

import dataclasses
import sys
import types
import typing

from absl import flags

_MISSING = dataclasses.MISSING


def _base_type(hint):
    """(type, optional) of a type hint such as `int`, `int | None`, `tuple`."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported type {hint!r}")
        return _base_type(inner[0])[0], True
    if origin is tuple:
        return tuple, False
    return hint, False


def is_section(f) -> bool:
    return "section" in f.metadata


def flag_fields(cls):
    """The leaf fields of `cls` that are flags, sections expanded: [(field, type)]."""
    return [(f, t) for _, f, t in _walk(cls)]


def _walk(cls, path=()):
    """[(path of section names, field, type)] of every leaf flag field under `cls`."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("flag", True) is False:
            continue
        if is_section(f):
            out += _walk(f.metadata["section"], path + (f.name,))
        else:
            out.append((path, f, _base_type(hints[f.name])[0]))
    return out


def section(cls, title: str, **metadata):
    """A field holding the nested config `cls` (a group of flags titled `title`)."""
    return dataclasses.field(default_factory=cls,
                             metadata={"section": cls, "title": title, **metadata})


def flag_groups(cls, title: str = "General") -> list[tuple[str, list[str]]]:
    """[(title, [flag names])] in declaration order: the top-level fields under `title`, then
    one group per section (nested sections get their own group)."""
    groups = {(): (title, [])}
    for path, f, _ in _walk(cls):
        if path not in groups:
            owner, fld = cls, None
            for name in path:
                fld = {x.name: x for x in dataclasses.fields(owner)}[name]
                owner = fld.metadata["section"]
            groups[path] = (fld.metadata["title"], [])
        groups[path][1].append(f.name)
    return [g for g in groups.values() if g[1]]


def _default(f):
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


def _item_type(f):
    if "item" in f.metadata:
        return f.metadata["item"]
    default = _default(f)
    return type(default[0]) if default else str


def define_flags(cls, *, flag_values=flags.FLAGS, exclude=(), module_name=None,
                 defaults=None) -> None:
    """Defines one absl flag per field of the dataclass `cls` (see the module doc).

    The flags belong to the calling module (`module_name`), so its `--help` lists them.
    `defaults` ({field name: value}) replaces the declared defaults of those fields.
    """
    defaults = dict(defaults or {})
    names = [n for f, _ in flag_fields(cls) for n in (f.name, *f.metadata.get("aliases", ()))]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"{cls.__name__}: flag name(s) {', '.join(twice)} declared twice")
    unknown = sorted(set(defaults) - set(names))
    if unknown:
        raise TypeError(f"{cls.__name__}: defaults for unknown field(s) {', '.join(unknown)}")
    if module_name is None:
        module_name = sys._getframe(1).f_globals.get("__name__", "")
        if module_name == "__main__":  # absl names the main module by its file
            module_name = sys.argv[0]
    for f, typ in flag_fields(cls):
        if f.name in exclude or f.name in flag_values:
            continue
        help_ = f.metadata.get("help") or f.name.replace("_", " ")
        default = defaults.get(f.name, _default(f))
        if _required(f) and f.name not in defaults:
            help_ += " (required)"
        kw = {"flag_values": flag_values, "module_name": module_name}
        choices = f.metadata.get("choices")
        bound = {"lower_bound": f.metadata["min"]} if "min" in f.metadata else {}
        if typ is bool:
            flags.DEFINE_bool(f.name, default, help_, **kw)
        elif typ is int:
            flags.DEFINE_integer(f.name, default, help_, **bound, **kw)
        elif typ is float:
            flags.DEFINE_float(f.name, default, help_, **bound, **kw)
        elif typ is tuple:
            flags.DEFINE_list(f.name, None if default is None else [str(v) for v in default],
                              help_, **kw)
        elif choices:
            flags.DEFINE_enum(f.name, default, list(choices), help_, **kw)
        elif typ is str:
            flags.DEFINE_string(f.name, default, help_, **kw)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag type for {typ!r}")
        for alias in f.metadata.get("aliases", ()):
            flags.DEFINE_alias(alias, f.name, flag_values=flag_values, module_name=module_name)


def check(config) -> None:
    """ValueError naming the field for a value outside its `choices` or below its `min`."""
    for path, f, _ in _walk(type(config)):
        owner = config
        for name in path:
            owner = getattr(owner, name)
        value = getattr(owner, f.name)
        if value is None:
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"--{f.name}={value!r} unknown; choose one of "
                             f"{', '.join(map(str, choices))}")
        if "min" in f.metadata and value < f.metadata["min"]:
            raise ValueError(f"--{f.name} must be >= {f.metadata['min']}, got {value}")


def _required(f) -> bool:
    return f.default is _MISSING and f.default_factory is _MISSING


def from_flags(cls, *, flag_values=flags.FLAGS, exclude=(), **overrides):
    """An instance of `cls` from the parsed flags (and `overrides`, which win; a section's
    fields are overridden by name like any other, or the section as a whole).

    Raises ValueError naming the flag when a required one is missing or a list item does not
    parse as its type.
    """
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides or f.metadata.get("flag", True) is False:
            continue
        if is_section(f):
            sub = f.metadata["section"]
            inner = {n: overrides.pop(n) for n in list(overrides)
                     if n in {x.name for x, _ in flag_fields(sub)}}
            values[f.name] = from_flags(sub, flag_values=flag_values, exclude=exclude, **inner)
            continue
        if f.name in exclude:
            continue
        typ = _base_type(hints[f.name])[0]
        value = flag_values[f.name].value
        if _required(f) and value in (None, "", []):
            raise ValueError(f"--{f.name} is required")
        if typ is tuple and value is not None:
            item = _item_type(f)
            try:
                value = tuple(item(v) for v in value)
            except ValueError:
                raise ValueError(f"--{f.name}={','.join(value)}: every item must be "
                                 f"{item.__name__}") from None
        values[f.name] = value
    return cls(**values, **overrides)


def field(default=_MISSING, help: str = "", **metadata):
    """`dataclasses.field` with flag metadata: `field(8, "Batch size.", choices=...)`."""
    meta = {"help": help, **metadata}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple default for list flags")
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
