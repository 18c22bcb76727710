"""`python -m d3d_tf.benchmark --smoke` runs every part and reports sane numbers.

No speed is asserted: the benchmark is where speed is measured, tests only check it works.
The FLOPs it reports are checked against a count written out by hand below.
"""
import json
import math
import os
import subprocess
import sys

import pytest
from model_fixtures import SLIM_STAGES

from d3d_tf import models
from d3d_tf.benchmark import versus_torchvision
from d3d_tf.models import cpu_choices, summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def s3dg_flops(frames, size, m, classes):
    """2 x multiply-adds of S3D-G (first temporal kernel 3, separable 3x3 + 3x1x1 and gating
    from Conv2d_2c_3x3) for one clip, counted layer by layer from the architecture."""
    def d(c):
        return max(int(c * m), 16)

    def half(x):
        return math.ceil(x / 2)  # SAME stride 2

    total = 0
    t, h = half(frames), half(size)
    c1, c2, c3 = d(64), d(64), d(192)
    total += 2 * t * h * h * (3 * 7 * 7 * 3) * c1  # Conv2d_1a_7x7
    h = half(h)  # MaxPool_2a_3x3
    n = t * h * h
    total += 2 * n * c1 * c2  # Conv2d_2b_1x1
    total += 2 * n * (9 * c2 * c3 + 3 * c3 * c3) + 2 * c3 * c3  # Conv2d_2c_3x3 + gating
    cin = c3
    for stage in ("3", "4", "5"):
        if stage == "3":
            h = half(h)  # MaxPool_3a_3x3, spatial only
        else:
            t, h = half(t), half(h)  # MaxPool_4a_3x3 / MaxPool_5a_2x2
        n = t * h * h
        for depths in SLIM_STAGES[stage]:
            d0, d1a, d1b, d2a, d2b, d3 = (d(c) for c in depths)
            for a, b in ((d1a, d1b), (d2a, d2b)):
                total += 2 * n * (cin * a + 9 * a * b + 3 * b * b) + 2 * b * b
            total += 2 * n * cin * d0 + 2 * d0 * d0 + 2 * n * cin * d3 + 2 * d3 * d3
            cin = d0 + d1b + d2b + d3
    # Logits: avg pool [2,7,7] (VALID, shrunk to the map), then a 1x1x1 conv.
    n_out = (t - min(t, 2) + 1) * (h - min(h, 7) + 1) ** 2
    return total + 2 * n_out * cin * classes


def test_flop_count_matches_the_hand_count():
    net = models.build_classifier("s3dg", num_classes=400, input_shape=(8, 32, 32, 3),
                                  depth_multiplier=0.25)
    assert summary.total_flops(net) == s3dg_flops(8, 32, 0.25, 400)


@pytest.mark.slow
def test_benchmark_smoke_runs_every_part(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "d3d_tf.benchmark", "--smoke", "--modes=function",
         "--precisions=float32", "--conv_impls=2d", f"--json={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for part in ("## model", "## distill", "## data", "## flow", "## export", "## profile",
                 "## torchvision"):
        assert part in done.stdout
    results = json.loads(out.read_text())
    model = results["model"]
    # One combination here; the matrix of modes, precisions and lowerings is
    # test_model_part_times_every_mode_precision_and_lowering's, bfloat16 and eager
    # test_measure_runs_eager_bfloat16_with_this_cpus_lowering's.
    assert [(r["what"], r["mode"], r["precision"], r["conv_impl"]) for r in model] == [
        (w, "function", "float32", "2d") for w in ("inference", "train_step")]
    assert cpu_choices.describe(cpu_choices.cpu_flags()) in done.stdout
    for r in model:  # the smoke model: s3dg 8x32x32, depth 0.25, 400 classes
        assert r["clips_per_second"] > 0 and r["batch"] == 1
        assert r["gflops_per_clip"] == pytest.approx(s3dg_flops(8, 32, 0.25, 400) / 1e9)
    (distill,) = results["distill"]
    assert distill["baseline"] > 0 and distill["d3d"] > 0 and distill["teacher"] > 0
    data = results["data"]
    assert [tuple(r["modalities"]) for r in data] == [("rgb",), ("rgb", "flow")]
    for r in data:
        assert r["clips"] == 3 * r["batch_size"] and r["clips_per_s"] > 0
        assert r["clips_per_s"] > 0 and r["record_bytes"] > 0
    assert [r["workers"] for r in results["flow"]] == [1, 2]
    assert all(r["pairs"] == 2 * r["workers"] and r["pairs_per_s"] > 0 for r in results["flow"])
    export = results["export"]
    assert [(r["format"], r.get("threads")) for r in export] == [
        ("SavedModel", None), ("TFLite float32", 1), ("TFLite int8", 1),
        ("TFLite float32", 2), ("TFLite int8", 2)]
    sizes = {r["format"]: r["bytes"] for r in export}
    assert sizes["TFLite int8"] < sizes["TFLite float32"]  # int8 weights really are smaller
    for f32, i8 in (export[1:3], export[3:5]):  # the ratio is int8's over float32's, per threads
        assert f32["over_float32"] == 1.0 and i8["over_float32"] == pytest.approx(
            i8["ms"] / f32["ms"])
    profiles = results["profile"]
    assert [r["conv_impl"] for r in profiles] == ["2d"]
    for r in profiles:  # a train step: convolutions both ways, BN, and the shares add up
        cats = r["categories"]
        assert cats["conv forward"] > 0 and cats["conv backward"] > 0 and cats["batch norm"] > 0
        assert r["op_s_per_step"] == pytest.approx(sum(cats.values()))
        assert r["wall_s_per_step"] > 0
    versus = results["torchvision"]
    if versus_torchvision.torch_available():
        cases = versus_torchvision.default_cases()
        assert [(r["what"], r["framework"], r["model"], r["precision"]) for r in versus] == [
            (w, *c) for w in ("inference", "train_step") for c in cases]
        assert all(r["seconds"] > 0 for r in versus)
        assert [r["torchvision_over_this"] for r in versus if r["framework"] == "torchvision"] \
            == [1.0] * (2 * sum(c[0] == "torchvision" for c in cases))
        for r in versus:  # every row set against the matmul timed beside it
            assert r["gflops_per_s"] == pytest.approx(r["gflop"] / r["seconds"])
            assert r["of_matmul"] > 0
        assert "of the matmul's" in done.stdout
    else:  # the optional extra is missing: the part says so instead of failing
        assert versus == [] and "torch / torchvision are not installed" in done.stdout


def test_model_part_times_every_mode_precision_and_lowering(monkeypatch):
    """The smoke model's matrix, with a fake timer: tf.function compares the lowerings side by
    side, eager runs this CPU's auto choice, every precision both ways."""
    from absl.testing import flagsaver

    from d3d_tf.benchmark import __main__ as bench
    from d3d_tf.benchmark import model as speed

    auto = cpu_choices.resolve_conv_impl("auto")
    calls = []

    def measure(what, **kw):
        calls.append((what, kw))
        impl = cpu_choices.resolve_conv_impl(kw["conv_impl"])
        return speed.SpeedResult(what, "s3dg", kw["frames"], kw["size"], kw["batch"], kw["mode"],
                                 kw["precision"], impl, kw["depth_multiplier"], 0.5, 2.0, 0.25,
                                 0.5)

    monkeypatch.setattr(speed, "measure", measure)
    logged = []
    with flagsaver.as_parsed(smoke="true", modes="eager,function",
                             precisions="float32,bfloat16", conv_impls="2d,2d_spatial"):
        model = bench.model_part(logged.append)
    assert sorted((r["what"], r["mode"], r["precision"], r["conv_impl"]) for r in model) == sorted(
        [(w, "function", p, c) for w in ("inference", "train_step")
         for p in ("float32", "bfloat16") for c in ("2d", "2d_spatial")]
        + [(w, "eager", p, auto) for w in ("inference", "train_step")
           for p in ("float32", "bfloat16")])
    # the smoke model: s3dg 8x32x32, depth 0.25, batch 1, one timed call
    assert {(kw["frames"], kw["size"], kw["depth_multiplier"], kw["batch"], kw["iters"])
            for _, kw in calls} == {(8, 32, 0.25, 1, 1)}
    assert {kw["conv_impl"] for _, kw in calls if kw["mode"] == "eager"} == {"auto"}
    assert all(r["case"] == "tiny" and r["clips_per_second"] == 2.0 for r in model)
    assert len(logged) == len(model) == 12
    table = bench.model_table(model).splitlines()
    assert table[0] == cpu_choices.describe(cpu_choices.cpu_flags())
    assert ["tiny", "train_step", "1", "eager", "bfloat16", auto, "0.500", "2.00", "0.25",
            "0.5"] in [line.split() for line in table[3:]]


def test_measure_runs_eager_bfloat16_with_this_cpus_lowering():
    """What the smoke test's one combination leaves out, measured for real once: an eager
    bfloat16 train step on this CPU's auto lowering, the global policy left as it was."""
    import keras

    from d3d_tf.benchmark import model as speed

    r = speed.measure("train_step", frames=8, size=32, batch=1, mode="eager",
                      precision="bfloat16", conv_impl="auto", depth_multiplier=0.25, iters=1)
    assert (r.mode, r.precision) == ("eager", "bfloat16")
    assert r.conv_impl == cpu_choices.resolve_conv_impl("auto")
    assert r.clips_per_second > 0 and r.batch == 1
    assert r.gflops_per_clip == pytest.approx(s3dg_flops(8, 32, 0.25, 400) / 1e9)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_versus_torchvision_alternates_cases_and_divides_by_torchvision():
    calls = []
    cases = versus_torchvision.CASES + versus_torchvision.BF16_CASES
    fake = {("d3d_tf", "s3dg", "float32"): [1.0, 3.0],
            ("d3d_tf", "s3d_torchvision", "float32"): [2.0, 2.0],
            ("torchvision", "s3d", "float32"): [4.0, 8.0],
            ("d3d_tf", "s3dg", "bfloat16"): [0.5, 0.5],
            ("torchvision", "s3d", "bfloat16"): [2.0, 2.0]}

    def measure(case):
        calls.append((case["framework"], case["model"], case["precision"]))
        return fake[calls[-1]][len(calls) > len(cases)]

    rows = versus_torchvision.compare("train_step", frames=8, size=32, rounds=2, cases=cases,
                                      measure=measure)
    assert calls == list(cases) * 2   # round after round, every case once a round
    got = {(r["framework"], r["model"], r["precision"]): r for r in rows}
    assert got[("d3d_tf", "s3dg", "float32")]["seconds"] == 2.0     # median of 1 and 3
    assert got[("d3d_tf", "s3dg", "float32")]["rounds"] == [1.0, 3.0]
    assert got[("d3d_tf", "s3dg", "float32")]["torchvision_over_this"] == 3.0   # 6 / 2
    assert got[("torchvision", "s3d", "float32")]["torchvision_over_this"] == 1.0
    # bfloat16 is set against torchvision in bfloat16, not against its float32
    assert got[("d3d_tf", "s3dg", "bfloat16")]["torchvision_over_this"] == 4.0   # 2 / 0.5
    with pytest.raises(ValueError, match="what must be one of"):
        versus_torchvision.compare("backward", frames=8, size=32, measure=measure)


def test_versus_torchvision_sets_gflops_against_the_matmul_and_the_targets():
    seconds = {("d3d_tf", "s3dg"): 2.0, ("torchvision", "s3d"): 12.0, ("machine", "matmul"): 0.5}
    cases = (("d3d_tf", "s3dg", "float32"), ("torchvision", "s3d", "float32"),
             versus_torchvision.MATMUL_CASE)
    rows = versus_torchvision.compare(
        "train_step", frames=8, size=32, rounds=1, cases=cases,
        measure=lambda c: seconds[(c["framework"], c["model"])])
    gflop = {"s3dg": 30.0, "s3d": 24.0, "matmul": 50.0}
    rows = versus_torchvision.with_gflops(rows, flops=lambda f, m, w, **_: gflop[m])
    got = {r["model"]: r for r in rows}
    assert got["matmul"]["torchvision_over_this"] is None   # not a model: no ratio
    assert got["matmul"]["gflops_per_s"] == 100.0 and got["matmul"]["of_matmul"] == 1.0
    assert got["s3dg"]["gflops_per_s"] == 15.0 and got["s3dg"]["of_matmul"] == 0.15
    assert got["s3dg"]["torchvision_over_this"] == 6.0
    # 3x torchvision's 12 s is 4 s for the train step: 30 GFLOP in 4 s = 7.5 GFLOP/s
    (need,) = versus_torchvision.target_needs(rows)
    assert need == {"what": "train_step", "times": 3.0, "seconds": 4.0, "gflops_per_s": 7.5,
                    "of_matmul": 0.075}
    # the real count: a train step is three forward passes, torchvision counted on its preset
    fwd = versus_torchvision.gflop_per_call("d3d_tf", "s3d_torchvision", "inference", frames=8,
                                            size=32, batch=2)
    assert versus_torchvision.gflop_per_call("torchvision", "s3d", "train_step", frames=8,
                                             size=32, batch=2) == pytest.approx(3 * fwd)
    assert fwd == pytest.approx(2 * versus_torchvision.gflop_per_call(
        "d3d_tf", "s3d_torchvision", "inference", frames=8, size=32, batch=1))
    assert versus_torchvision.gflop_per_call("machine", "matmul", "inference", frames=8,
                                             size=32, batch=1) == 2 * 2048**3 / 1e9


@pytest.mark.slow
def test_versus_torchvision_times_d3d_tf_in_its_own_process():
    """The process protocol, on the side that needs no torch: a fresh process times the
    preset with torchvision's architecture and hands back seconds."""
    (row,) = versus_torchvision.compare(
        "inference", frames=8, size=32, rounds=1, iters=1,
        cases=(("d3d_tf", "s3d_torchvision", "float32"),))
    assert row["seconds"] > 0 and row["torchvision_over_this"] is None
    with pytest.raises(RuntimeError, match="d3d_tf no_such_model float32 inference failed: .*"
                                           "Unknown model 'no_such_model'"):
        versus_torchvision.compare("inference", frames=8, size=32, rounds=1, iters=1,
                                   cases=(("d3d_tf", "no_such_model", "float32"),))


def test_profile_categories_and_op_table_parsing():
    from d3d_tf.benchmark import profile

    assert profile.category("_MklNativeConv3DBackpropFilterV2") == "conv backward"
    assert profile.category("_MklNativeConv2D") == "conv forward"
    assert profile.category("_MklNativeFusedConv2D") == "conv forward"
    assert profile.category("DepthwiseConv2dNativeBackpropInput") == "conv backward"
    assert profile.category("FusedBatchNormGradV3") == "batch norm"
    assert profile.category("_MklNativeMaxPool3DGrad") == "pooling"
    assert profile.category("ConcatV2") == profile.category("_MklTranspose") == "layout"
    assert profile.category("StridedSliceGrad") == "layout"
    assert profile.category("ResourceApplyKerasMomentum") == "optimizer"
    assert profile.category("Sigmoid") == profile.OTHER
    cols = [{"id": i} for i in ("rank", "type", "operation", "total_self_time")]
    table = json.dumps([{"cols": cols, "rows": [
        {"c": [{"v": 1}, {"v": "IDLE"}, {"v": "IDLE"}, {"v": 5e6}]},
        {"c": [{"v": 2}, {"v": "_MklNativeConv3D"}, {"v": "s3dg/Conv2d_1a_7x7"}, {"v": 2500.0}]},
    ]}])
    assert profile.parse_op_stats(table) == [("_MklNativeConv3D", "s3dg/Conv2d_1a_7x7", 0.0025)]


def test_op_breakdown_profiles_a_real_step():
    """The profiler's table of a real train step: every conv of a tiny S3D-G shows up."""
    from d3d_tf.benchmark import model as speed
    from d3d_tf.benchmark import profile

    fn, _ = speed.make_step("train_step", frames=4, size=32, batch=1, conv_impl="3d",
                            depth_multiplier=0.25, num_classes=4)
    r = profile.op_breakdown(fn, steps=1, warmup=1)
    assert r["steps"] == 1 and r["categories"]["conv backward"] > 0
    assert r["categories"]["conv forward"] > 0
    assert any(op.startswith("Conv3DBackpropFilter") for op, _ in r["top_ops"])
