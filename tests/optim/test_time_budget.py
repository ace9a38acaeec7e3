"""TimeBudgetDecay: the factor against a float64 NumPy formula, wrapping Eden, a real Adam step at
the end of the budget, serialisation and bad arguments."""
import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.optim import Eden, TimeBudgetDecay, time_budget_lr_factor

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("optim_numpy_reference", _HERE / "numpy_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def factor_reference(progress: float, decay_fraction: float) -> float:
    """Written from the definition: 1 before the window, linear to 0 across it, 0 after."""
    start = 1.0 - decay_fraction
    if progress <= start:
        return 1.0
    if progress >= 1.0:
        return 0.0
    return 1.0 - (progress - start) / decay_fraction


@pytest.mark.parametrize("decay_fraction", [0.2, 0.5, 1.0])
def test_factor_matches_the_definition(decay_fraction):
    progress = np.array([0.0, 0.1, 0.5, 0.79, 0.8, 0.81, 0.9, 0.999, 1.0, 1.3], np.float64)
    got = time_budget_lr_factor(progress, decay_fraction).numpy()
    expected = [factor_reference(p, decay_fraction) for p in progress]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_schedule_scales_eden_by_the_factor_of_the_progress_set():
    eden_kwargs = dict(base_lr=0.001, lr_batches=5000, lr_epochs=6, warmup_batches=200, steps_per_epoch=700)
    schedule = TimeBudgetDecay(Eden(**eden_kwargs), decay_fraction=0.25)
    for progress in (0.0, 0.6, 0.75, 0.8, 0.95, 1.0, 1.2):
        schedule.set_progress(progress)
        for step in (0, 150, 4000, 7800):
            expected = ref.eden_lr(step, **eden_kwargs) * factor_reference(progress, 0.25)
            assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12), (progress, step)


def test_adam_takes_no_step_once_the_budget_is_used_and_a_full_step_before_the_window():
    schedule = TimeBudgetDecay(Eden(0.1, warmup_batches=0), decay_fraction=0.5)
    weight = tf.Variable([1.0, -2.0])
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    grads = [tf.constant([0.3, -0.7])]
    schedule.set_progress(0.2)
    optimizer.apply_gradients(zip(grads, [weight]))
    moved = weight.numpy().copy()
    assert not np.allclose(moved, [1.0, -2.0])  # lr 0.1 * factor 1: Adam moves each weight ~0.1
    np.testing.assert_allclose(np.abs(moved - [1.0, -2.0]), [0.1, 0.1], rtol=1e-3)
    schedule.set_progress(1.0)
    optimizer.apply_gradients(zip(grads, [weight]))
    np.testing.assert_array_equal(weight.numpy(), moved)
    assert float(optimizer.learning_rate) == 0.0


def test_config_round_trip_keeps_the_inner_schedule():
    schedule = TimeBudgetDecay(Eden(0.002, lr_batches=123, warmup_batches=7), decay_fraction=0.3)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(again, TimeBudgetDecay) and isinstance(again.schedule, Eden)
    assert again.get_config() == schedule.get_config()
    for progress in (0.5, 0.85):
        schedule.set_progress(progress)
        again.set_progress(progress)
        assert float(again(300)) == pytest.approx(float(schedule(300)))


@pytest.mark.parametrize("decay_fraction", [0.0, -0.1, 1.5])
def test_decay_fraction_outside_0_1_is_refused(decay_fraction):
    with pytest.raises(ValueError, match="decay_fraction must be in \\(0, 1\\]"):
        TimeBudgetDecay(Eden(0.001), decay_fraction)
    with pytest.raises(ValueError, match="decay_fraction"):
        time_budget_lr_factor(0.5, decay_fraction)
