"""experiments.compare_runs: window means of real TensorBoard event files (written by tf.summary)."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from experiments.compare_runs import read_scalars, window_means

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_run(run_dir, values, start=1, tag="model/ctc"):
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb"))
    with writer.as_default():
        for step, value in enumerate(values, start=start):
            tf.summary.scalar(tag, value, step=step)
            tf.summary.scalar("other", -1.0, step=step)
    writer.close()


def test_window_means_and_resumed_steps(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 10, size=25)
    _write_run(str(tmp_path / "a"), values)
    _write_run(str(tmp_path / "a"), [100.0] * 5, start=21)  # a resume re-logs steps 21..25
    scalars = read_scalars(str(tmp_path / "a"), ["model/ctc"])
    assert sorted(scalars["model/ctc"]) == list(range(1, 26))
    means = window_means(scalars["model/ctc"], 10)
    assert [m["step"] for m in means] == [10, 20, 30] and [m["count"] for m in means] == [10, 10, 5]
    np.testing.assert_allclose(means[0]["mean"], values[:10].mean(), rtol=1e-6)
    np.testing.assert_allclose(means[1]["mean"], values[10:20].mean(), rtol=1e-6)
    assert means[2]["mean"] == 100.0


def test_cli_writes_json_and_png(tmp_path):
    _write_run(str(tmp_path / "a"), [1.0] * 20)
    _write_run(str(tmp_path / "b"), [2.0] * 20)
    out = tmp_path / "cmp.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.compare_runs",
                           f"--run_dirs={tmp_path / 'a'},{tmp_path / 'b'}", "--names=x,y", "--tags=model/ctc",
                           "--window=10", f"--output_json={out}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [p["mean"] for p in result["runs"]["y"]["curves"]["model/ctc"]] == [2.0, 2.0]
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    proc = subprocess.run([sys.executable, "-m", "experiments.compare_runs", f"--run_dirs={tmp_path / 'none'}",
                           f"--output_json={out}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "no TensorBoard event files" in proc.stderr
