"""One step on 1 replica == one step on 2 replicas (MirroredStrategy on 2 logical CPUs): the loss
is normalised by the GLOBAL batch and the optimizer sees the summed gradient. Each run is a
subprocess because logical devices must be configured before TensorFlow initialises."""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(num_replicas, out, optimizer):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "replica_step.py"), str(num_replicas),
                           str(out), optimizer], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "scaled_adam"])
def test_one_and_two_replicas_give_the_same_update(tmp_path, optimizer):
    one = _run(1, tmp_path / "one.npz", optimizer)
    two = _run(2, tmp_path / "two.npz", optimizer)
    assert float(one["loss"]) == pytest.approx(float(two["loss"]), rel=1e-5)
    keys = [k for k in one.files if k.startswith("w")]
    assert keys
    for k in keys:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # The step moved the weights (not a comparison of two untouched initialisations). ScaledAdam's
    # first step moves a zero-initialised bias by only lr * param_min_rms (~5e-7), so "moved" is
    # "changed at all" rather than a fixed threshold.
    moved = sum(not np.array_equal(one[k], one["i" + k[1:]]) for k in keys)
    assert moved > len(keys) // 2
