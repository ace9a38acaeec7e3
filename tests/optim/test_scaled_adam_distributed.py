"""ScaledAdam under tf.distribute.MirroredStrategy (2 logical CPUs, in a subprocess)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent


def _run_worker(*flags):
    env = dict(os.environ, PYTHONPATH=str(_HERE.parents[1]), TF_CPP_MIN_LOG_LEVEL="2",
               KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, str(_HERE / "mirrored_worker.py"), *flags], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_matches_single_device():
    # Same global batch, loss / global batch: summed replica gradients equal the single-device
    # gradient, so 10 steps (incl. one skipped infinite-loss step) must give the same weights.
    result = _run_worker()
    assert result["num_replicas"] == 2
    assert result["max_abs_diff"] < 1e-5, result
    assert result["skipped"] == [1, 1], result
    assert result["moved"] > 1e-3, result  # the weights did train


@pytest.mark.slow
def test_model_fit_under_mirrored_strategy():
    result = _run_worker("--fit")
    assert result["fit_loss_last"] < 0.5 * result["fit_loss_first"], result
