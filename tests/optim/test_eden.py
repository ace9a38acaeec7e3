"""Eden schedule vs the NumPy formula."""
import importlib.util
import pathlib

import keras
import numpy as np
import pytest

from tf_todm.optim import Eden

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("optim_numpy_reference", _HERE / "numpy_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base_lr=0.045),
        dict(base_lr=0.045, lr_batches=7500, lr_epochs=3.5, warmup_start=0.1, steps_per_epoch=1300),
        dict(base_lr=0.01, lr_batches=50, lr_epochs=2, warmup_batches=37, steps_per_epoch=23,
             fractional_epoch=True),
        dict(base_lr=0.02, warmup_batches=0, steps_per_epoch=11),
    ],
)
def test_eden_matches_numpy(kwargs):
    schedule = Eden(**kwargs)
    steps = [0, 1, 17, 36, 37, 38, 499, 500, 501, 1299, 1300, 5000, 12345, 200000]
    got = [float(schedule(s)) for s in steps]
    expected = [ref.eden_lr(s, **kwargs) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_eden_shape_warmup_and_epoch_steps():
    schedule = Eden(0.04, lr_batches=100, lr_epochs=2, warmup_batches=10, steps_per_epoch=50)
    assert float(schedule(0)) == pytest.approx(0.02)  # warmup_start 0.5
    assert float(schedule(10)) > float(schedule(9))
    # the epoch factor drops in a step at the epoch boundary (integer epochs)
    jump = float(schedule(49)) / float(schedule(50))
    assert jump > 1.05


def test_eden_config_round_trip():
    schedule = Eden(0.03, lr_batches=10, lr_epochs=4, warmup_batches=7, warmup_start=0.2,
                    steps_per_epoch=13, fractional_epoch=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, Eden)
    assert restored.get_config() == schedule.get_config()
    assert float(restored(77)) == float(schedule(77))


def test_eden_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_start"):
        Eden(0.1, warmup_start=1.5)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Eden(0.1, steps_per_epoch=0)
