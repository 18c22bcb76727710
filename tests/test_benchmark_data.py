"""`python -m d3d_tf.benchmark --mode=data --smoke` runs and reports sane numbers."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_data_benchmark_smoke(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "d3d_tf.benchmark", "--mode=data", "--smoke",
                           f"--json={out}"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "clips/s" in done.stdout and "tiny rgb+flow" in done.stdout
    results = json.loads(out.read_text())["results"]
    assert [tuple(r["modalities"]) for r in results] == [("rgb",), ("rgb", "flow")]
    for r in results:
        assert r["clips"] == 3 * r["batch_size"] and r["clips_per_s"] > 0
        assert r["clips_per_s"] == r["clips"] / r["seconds"] and r["record_bytes"] > 0
