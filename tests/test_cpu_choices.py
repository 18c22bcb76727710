"""Per-CPU defaults: conv_impl and precision 'auto' follow the CPU's flags."""
import keras
import numpy as np
import pytest

from d3d_tf.models import cpu_choices, layers

AVX2 = frozenset({"fpu", "sse", "avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512 | {"amx_tile", "amx_bf16"}


def test_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\nprocessor\t: 1\n")
    assert cpu_choices.cpu_flags(str(info)) == {"fpu", "sse", "avx2", "fma"}
    empty = tmp_path / "arm"
    empty.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # no flags line: not x86
    assert cpu_choices.cpu_flags(str(empty)) is None
    assert cpu_choices.cpu_flags(str(tmp_path / "missing")) is None


def test_onednn_isa_cap_hides_the_flags_above_it(tmp_path, monkeypatch):
    """Under ONEDNN_MAX_CPU_ISA the rules see the CPU oneDNN is allowed to use: an AMX Xeon
    capped at AVX2 gets the AVX2 choices (conv3d, float32), capped at AVX512_CORE no bf16."""
    amx = AMX | {"avx_vnni", "avx512_fp16", "avx512_bf16"}
    assert cpu_choices.cap_flags(amx, "AVX2") == AVX2 | {"avx_vnni"}
    assert cpu_choices.auto_conv_impl(cpu_choices.cap_flags(amx, "AVX2")) == "2d_spatial"
    assert cpu_choices.has_native_bfloat16(cpu_choices.cap_flags(amx, "AVX512_CORE")) is False
    assert cpu_choices.cap_flags(amx, "AVX512_CORE_BF16") == amx - {"amx_tile", "amx_bf16"}
    assert cpu_choices.has_native_bfloat16(cpu_choices.cap_flags(amx, "AVX512_CORE_BF16"))
    assert "avx2" not in cpu_choices.cap_flags(amx, "AVX")
    for whole in (None, "ALL", "AVX512_CORE_AMX", "NO_SUCH_ISA"):
        assert cpu_choices.cap_flags(amx, whole) == amx
    assert cpu_choices.cap_flags(None, "AVX2") is None

    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu avx avx2 fma avx512f avx512_bf16\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert cpu_choices.cpu_flags(str(info)) == {"fpu", "avx", "avx2", "fma"}
    assert cpu_choices.resolve_conv_impl("auto", str(info)) == "2d_spatial"
    assert "(ONEDNN_MAX_CPU_ISA=AVX2)" in cpu_choices.describe(cpu_choices.cpu_flags(str(info)))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE")
    assert cpu_choices.cpu_flags(str(info)) == {"fpu", "avx", "avx2", "fma", "avx512f"}
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    assert cpu_choices.resolve_conv_impl("auto", str(info)) == "2d"


def test_native_bfloat16_needs_avx512_bf16_or_amx():
    assert cpu_choices.has_native_bfloat16(AVX2) is False
    assert cpu_choices.has_native_bfloat16(AVX512) is False
    assert cpu_choices.has_native_bfloat16(BF16) is True
    assert cpu_choices.has_native_bfloat16(AMX) is True
    assert cpu_choices.has_native_bfloat16(None) is None


def test_conv_lowering_rule_per_cpu():
    assert cpu_choices.auto_conv_impl(AVX2) == "2d_spatial"
    for flags in (AVX512, BF16, AMX, None, frozenset({"sse2"})):
        assert cpu_choices.auto_conv_impl(flags) == "2d"


def test_precision_rule_needs_native_bf16_and_a_big_step():
    big = cpu_choices.BF16_MIN_GFLOPS_PER_STEP
    assert cpu_choices.auto_precision(BF16, big) == "bfloat16"
    assert cpu_choices.auto_precision(AMX, 10 * big) == "bfloat16"
    assert cpu_choices.auto_precision(BF16, big * 0.99) == "float32"
    assert cpu_choices.auto_precision(AVX512, 10 * big) == "float32"
    assert cpu_choices.auto_precision(None, 10 * big) == "float32"


def test_explicit_conv_impl_overrides_and_bad_values_are_refused(tmp_path):
    for impl in ("2d", "3d", "2d_spatial", "2d_all"):
        assert cpu_choices.resolve_conv_impl(impl) == impl
    with pytest.raises(ValueError, match="conv_impl must be one of .*'auto'.*got '4d'"):
        cpu_choices.resolve_conv_impl("4d")
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu avx2 fma\n")
    assert cpu_choices.resolve_conv_impl("auto", str(info)) == "2d_spatial"


@pytest.mark.parametrize("flags, lowered", [(AVX2, "2d_spatial"), (BF16, "2d")])
def test_auto_conv_layer_resolves_per_cpu_and_saves_auto(monkeypatch, flags, lowered):
    """A Conv3D with impl='auto' runs as the CPU's lowering (same numbers as explicit 3d) and
    serializes 'auto', so that a saved model re-resolves where it is loaded."""
    monkeypatch.setattr(cpu_choices, "cpu_flags", lambda cpuinfo="": flags)
    conv = layers.Conv3D(4, (1, 3, 3), padding="same", impl="auto")
    assert conv.resolved_impl == lowered
    assert conv.get_config()["impl"] == "auto"
    ref = layers.Conv3D(4, (1, 3, 3), padding="same", impl="3d")
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8, 5)).astype("float32")
    ref(x)
    conv(x)
    conv.set_weights(ref.get_weights())
    np.testing.assert_allclose(conv(x), ref(x), rtol=1e-5, atol=1e-5)
    again = layers.Conv3D.from_config(conv.get_config())
    assert again.impl == "auto" and again.resolved_impl == lowered


def test_describe_names_the_isa_and_both_choices():
    assert cpu_choices.describe(AVX2) == ("AVX2 CPU: conv_impl auto = 2d_spatial, "
                                          "precision auto = float32")
    assert "AMX CPU: conv_impl auto = 2d, precision auto = bfloat16 from" in \
        cpu_choices.describe(AMX)
    assert "unknown" in cpu_choices.describe(None)
    keras.backend.clear_session()


def test_capped_at_avx2_only_for_the_avx2_levels(monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for isa, capped in (("avx2", True), ("AVX2_VNNI", True), ("AVX", False),
                        ("AVX512_CORE", False), ("ALL", False)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert cpu_choices.capped_at_avx2() is capped, isa
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not cpu_choices.capped_at_avx2()
