"""`python -m d3d_tf.benchmark --smoke` runs every part and reports sane numbers.

No speed is asserted: the benchmark is where speed is measured, tests only check it works.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_smoke_runs_every_part(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "d3d_tf.benchmark", "--smoke", "--modes=eager,function",
         "--precisions=float32,bfloat16", f"--json={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for part in ("## model", "## distill", "## data", "## flow", "## export"):
        assert part in done.stdout
    results = json.loads(out.read_text())
    model = results["model"]
    assert {(r["what"], r["mode"], r["precision"]) for r in model} == {
        (w, m, p) for w in ("inference", "train_step") for m in ("eager", "function")
        for p in ("float32", "bfloat16")}
    for r in model:
        assert r["clips_per_second"] > 0 and r["gflops_per_clip"] > 0
        assert abs(r["clips_per_second"] - r["batch"] / r["seconds_per_batch"]) < 1e-6
    (distill,) = results["distill"]
    assert distill["baseline"] > 0 and distill["d3d"] > 0 and distill["teacher"] > 0
    assert abs(distill["ratio"] - distill["d3d"] / distill["baseline"]) < 1e-9
    data = results["data"]
    assert [tuple(r["modalities"]) for r in data] == [("rgb",), ("rgb", "flow")]
    for r in data:
        assert r["clips"] == 3 * r["batch_size"] and r["clips_per_s"] > 0
        assert r["clips_per_s"] == r["clips"] / r["seconds"] and r["record_bytes"] > 0
    assert [r["workers"] for r in results["flow"]] == [1, 2]
    assert all(r["pairs"] == 2 * r["workers"] and r["pairs_per_s"] > 0 for r in results["flow"])
    formats = [r["format"] for r in results["export"]]
    assert formats == ["SavedModel", "TFLite float32", "TFLite int8"]
    sizes = {r["format"]: r["bytes"] for r in results["export"]}
    assert sizes["TFLite int8"] < sizes["TFLite float32"]  # int8 weights really are smaller
