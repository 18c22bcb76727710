"""The pipeline's per-core rate and the cores an accelerator needs, and the GPU benchmark
command (`python -m d3d_tf.benchmark.gpu`) at its tiny size on the CPU. No speed is asserted."""
import json
import os
import subprocess
import sys

import pytest

from d3d_tf.benchmark import data as throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _result(name, clips_per_s, per_core):
    return {"name": name, "num_frames": 64, "crop_size": 224, "batch_size": 2,
            "clips_per_s": clips_per_s, "clips_per_s_per_core": per_core, "cpu_count": 16}


def test_cores_needed_and_the_data_table():
    # 8 clips every 0.08 s = 100 clips/s; 4 clips/s per core -> 25 cores.
    assert throughput.cores_needed(4.0, 0.08, 8) == pytest.approx(25.0)
    assert throughput.cores_needed(4.0) == pytest.approx(
        throughput.H100_ESTIMATE_BATCH / throughput.H100_ESTIMATE_STEP_S / 4.0)
    results = [_result("paper rgb", 30.0, 4.0), _result("paper rgb+flow", 12.0, 2.0)]
    table = throughput.format_table(results)
    assert "clips/s/core" in table and "cores/accelerator" in table
    assert "ESTIMATE" in table and "all 16 cores" in table
    rows = {line.split("  ")[0]: line.split() for line in table.splitlines()[2:4]}
    assert rows["paper rgb"][-1] == "25.0" and rows["paper rgb+flow"][-1] == "50.0"
    measured = throughput.format_table(results, accelerator_step_s=0.5, accelerator_batch=4)
    assert "ESTIMATE" not in measured and "4 clips every 0.5 s" in measured
    assert measured.splitlines()[2].split()[-1] == "2.0"     # 8 clips/s over 4 per core
    # Results without per-core rates keep the old table.
    old = [{k: v for k, v in r.items() if k != "clips_per_s_per_core"} for r in results]
    assert "cores/accelerator" not in throughput.format_table(old)


@pytest.mark.slow
def test_gpu_benchmark_command_prints_one_table_at_tiny_size(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "d3d_tf.benchmark.gpu", "--size=tiny", "--iters=1",
         "--num_batches=2", f"--json={out}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    configs = {(p, x) for p in ("float32", "mixed_float16") for x in (False, True)}
    for what, models in (("train", {"S3D-G", "D3D"}), ("infer", {"S3D-G"})):
        got = {(r["model"], r["precision"], r["xla"]) for r in rows if r["what"] == what}
        assert got == {(m, p, x) for m in models for p, x in configs}
    for r in rows:
        assert r["seconds"] > 0 and r["clips_per_s"] > 0
        if r["what"] == "train":
            pipe = next(d for d in rows if d["what"] == "data" and d["model"] == r["pipeline"])
            assert r["cores"] == pytest.approx(r["clips_per_s"] / pipe["clips_per_s_per_core"])
    assert {r["model"] for r in rows if r["what"] == "data"} == {"RGB", "RGB+flow"}
    table = done.stdout
    assert "no GPU:" in table and "cores to feed" in table
    assert len([line for line in table.splitlines()
                if line.split()[:1] in (["train"], ["infer"], ["data"])]) == len(rows)
