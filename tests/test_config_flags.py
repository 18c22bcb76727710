"""Flags derived from config dataclasses (`d3d_tf.core.config_flags`)."""
from __future__ import annotations

import dataclasses

import pytest
from absl import flags

from d3d_tf.core import config_flags
from d3d_tf.core.config_flags import field


@dataclasses.dataclass
class Toy:
    path: str = field(help="Where.")
    mode: str = field("a", "Mode.", choices=("a", "b"))
    steps: int = field(10, "Steps.", min=1)
    rate: float | None = field(None, "Rate.")
    sizes: tuple = field((1, 2), "Sizes.", aliases=("size",))
    names: tuple = field((), "Names.")
    flag: bool = field(True, "Flag.")
    hidden: int = field(3, "Code only.", flag=False)


def _parse(argv):
    fv = flags.FlagValues()
    config_flags.define_flags(Toy, flag_values=fv)
    fv(["prog", *argv])
    return fv


def test_fields_become_flags_with_types_defaults_and_help():
    fv = _parse(["--path=x"])
    c = config_flags.from_flags(Toy, flag_values=fv)
    assert c == Toy(path="x")
    assert "hidden" not in fv
    assert fv["mode"].help.endswith("Mode.") and fv["path"].help == "Where. (required)"
    c = config_flags.from_flags(Toy, flag_values=_parse(
        ["--path=y", "--mode=b", "--steps=3", "--rate=0.5", "--size=4,5", "--names=p,q",
         "--noflag"]))
    assert c == Toy(path="y", mode="b", steps=3, rate=0.5, sizes=(4, 5), names=("p", "q"),
                    flag=False)


def test_bad_values_fail_at_parse_or_with_the_flag_named():
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(["--mode=c"])
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(["--steps=0"])
    with pytest.raises(ValueError, match="--path is required"):
        config_flags.from_flags(Toy, flag_values=_parse([]))
    with pytest.raises(ValueError, match="--sizes=1,x: every item must be int"):
        config_flags.from_flags(Toy, flag_values=_parse(["--path=p", "--sizes=1,x"]))
    with pytest.raises(ValueError, match="--steps must be >= 1, got 0"):
        config_flags.check(Toy(path="p", steps=0))
    with pytest.raises(ValueError, match="--mode='z' unknown"):
        config_flags.check(Toy(path="p", mode="z"))


def test_train_flags_are_the_train_config_fields():
    """Every TrainConfig field is a flag of `python -m d3d_tf.train`, so a new option is one
    field; options that used to be unreachable (head, conv_impl, gating) are flags."""
    from d3d_tf import train
    from d3d_tf.training import trainer

    names = {f.name for f in dataclasses.fields(trainer.TrainConfig)}
    assert names <= set(train.FLAGS)
    assert {"head", "conv_impl", "gating_startat", "temporal_conv_startat"} <= names
    train.FLAGS.unparse_flags()
    train.FLAGS(["train", "--model_dir=m", "--train_data=d", "--head=global",
                 "--gating_startat=none", "--distill_endpoint=4F", "--distill_weight=100",
                 "--input_range=[0,1]"])
    c = train.config_from_flags()
    assert (c.head, c.distill_endpoints, c.distill_weights, c.rgb_range) == (
        "global", ("4F",), (100.0,), "[0,1]")
    options = trainer._model_options(c, 3)
    assert options["head"] == "global" and options["gating_startat"] is None
    assert "temporal_conv_startat" not in options  # None: the preset's value
    train.FLAGS.unparse_flags()


@dataclasses.dataclass
class Inner:
    frames: int = field(8, "Frames.", min=1)
    side: int | None = field(None, "Side.")


@dataclasses.dataclass
class Outer:
    out: str = field("o", "Out.")
    clip: Inner = config_flags.section(Inner, "Clip")
    other: Toy = config_flags.section(Toy, "Toy things")


def test_sections_are_flat_flags_grouped_under_their_titles():
    fv = flags.FlagValues()
    config_flags.define_flags(Outer, flag_values=fv, defaults={"frames": 4, "path": "p0"})
    fv(["prog", "--side=3", "--mode=b"])
    c = config_flags.from_flags(Outer, flag_values=fv, steps=7)
    assert c.clip == Inner(frames=4, side=3)
    assert c.other == Toy(path="p0", mode="b", steps=7)
    assert fv["frames"].help.endswith("Frames.") and "(required)" not in fv["path"].help
    assert config_flags.flag_groups(Outer) == [
        ("General", ["out"]), ("Clip", ["frames", "side"]),
        ("Toy things", ["path", "mode", "steps", "rate", "sizes", "names", "flag"])]
    with pytest.raises(ValueError, match="--frames must be >= 1, got 0"):
        config_flags.check(dataclasses.replace(c, clip=Inner(frames=0)))


def test_a_name_twice_in_one_tree_or_a_default_for_no_field_is_refused():
    @dataclasses.dataclass
    class Twice:
        frames: int = field(1, "Frames again.")
        clip: Inner = config_flags.section(Inner, "Clip")

    with pytest.raises(TypeError, match="frames declared twice"):
        config_flags.define_flags(Twice, flag_values=flags.FlagValues())
    @dataclasses.dataclass
    class AliasTwice:
        sizes: tuple = field((1,), "Sizes.", aliases=("side",))
        clip: Inner = config_flags.section(Inner, "Clip")

    with pytest.raises(TypeError, match="side declared twice"):
        config_flags.define_flags(AliasTwice, flag_values=flags.FlagValues())
    with pytest.raises(TypeError, match="unknown field.*nope"):
        config_flags.define_flags(Inner, flag_values=flags.FlagValues(), defaults={"nope": 1})
