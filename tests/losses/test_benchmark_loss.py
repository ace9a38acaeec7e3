"""experiments/benchmark_loss.py as a CLI: bad flags exit 1 with one line; a tiny run writes JSON."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.benchmark_loss", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_bad_flag_prints_one_line_and_exits_1():
    out = run("--prune_range=1")
    assert out.returncode == 1
    assert out.stdout.strip() == "benchmark_loss: --prune_range must be >= 2, got 1"
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_tiny_run_writes_json(tmp_path):
    path = tmp_path / "loss.json"
    out = run("--batch=2", "--frames=12", "--labels=4", "--vocab=9", "--joiner_dim=6",
              "--prune_range=3", "--repeats=2", "--measure_memory=false",
              f"--output_json={path}")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(path.read_text())
    assert result["exact_loss_rel_diff_vs_naive"] < 1e-5
    assert set(result["median_ms"]) == {"exact_ours", "exact_naive", "joiner_exact",
                                        "joiner_pruned"}
    assert "faster" in out.stdout
