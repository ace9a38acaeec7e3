"""Median-window clipping functions vs NumPy."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.optim import clipping

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("optim_numpy_reference", _HERE / "numpy_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def test_scaled_grad_norm_weights_tensors_by_rms_and_scalars_by_scale():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 5)), rng.standard_normal(7), np.array(2.5)]
    rms = [0.3, 1.7, None]
    expected = math.sqrt(np.sum((grads[0] * 0.3) ** 2) + np.sum((grads[1] * 1.7) ** 2)
                         + 2.5**2 * 0.1**2)
    got = clipping.scaled_grad_norm([tf.constant(g, tf.float32) for g in grads],
                                    [None if r is None else tf.constant(r) for r in rms], 0.1)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="param_rms"):
        clipping.scaled_grad_norm([tf.ones(3)], [], 0.1)


@pytest.mark.parametrize("period", [100, 7, 30])
def test_threshold_follows_numpy_median_of_recent_norms(period):
    rng = np.random.default_rng(period)
    norms = np.exp(rng.standard_normal(230)).astype(np.float32)
    history = tf.zeros([period], tf.float32)
    threshold = tf.constant(np.inf, tf.float32)
    reference = ref.MedianThreshold(clipping_scale=2.0, period=period)
    refreshed = 0
    update = tf.function(clipping.update_norm_history, reduce_retracing=True)
    for step, norm in enumerate(norms):
        history, threshold = update(history, threshold, tf.constant(norm), tf.constant(step, tf.int64),
                                    2.0, period)
        before = reference.threshold
        reference.observe(step, norm)
        refreshed += reference.threshold != before
        assert float(threshold) == pytest.approx(reference.threshold, rel=1e-6), step
        if step > 0 and step % period == 0 and period >= 30:
            # a full window: the threshold is 2x an order statistic next to np.median
            # (for small windows index (n // 4) * 2 sits below the median, as in icefall)
            window = reference.norms[-period:]
            lo, hi = np.percentile(window, [40, 60])
            assert 2 * lo <= float(threshold) <= 2 * hi
    irregular = [s for s in (10, 20, 40) if s < period]
    assert refreshed == len(irregular) + (len(norms) - 1) // period


def test_irregular_steps_double_the_threshold():
    history = tf.zeros([100])
    threshold = tf.constant(np.inf)
    for step in range(11):
        history, threshold = clipping.update_norm_history(
            history, threshold, tf.constant(float(step)), tf.constant(step, tf.int64), 3.0, 100)
    # steps 1..10 recorded norms 1..10: sorted index (10 // 4) * 2 = 4 -> 5.0; x 3 x 2 (irregular)
    assert float(threshold) == pytest.approx(30.0)


def test_median_window_clip_scales_and_flags_non_finite():
    grads = [tf.fill([2, 3], 4.0), tf.constant(1.0)]
    rms = [tf.constant(0.5), None]
    out = clipping.median_window_clip(grads, rms, tf.zeros([5]), tf.constant(1.0), tf.constant(3),
                                      clipping_scale=2.0, clipping_update_period=5,
                                      scalar_lr_scale=0.1)
    tot = math.sqrt(6 * 2.0**2 + 0.1**2)
    assert float(out.tot_norm) == pytest.approx(tot, rel=1e-6)
    assert float(out.factor) == pytest.approx(1.0 / tot, rel=1e-6)
    np.testing.assert_allclose(out.grads[0].numpy(), 4.0 / tot, rtol=1e-6)
    assert bool(out.finite)
    assert float(out.norm_history[3]) == pytest.approx(tot, rel=1e-6)

    bad = clipping.median_window_clip([tf.constant([1.0, np.nan])], [tf.constant(1.0)],
                                      out.norm_history, out.threshold, tf.constant(4),
                                      clipping_scale=2.0, clipping_update_period=5,
                                      scalar_lr_scale=0.1)
    assert not bool(bad.finite) and float(bad.factor) == 0.0
    np.testing.assert_array_equal(bad.norm_history.numpy(), out.norm_history.numpy())
    assert float(bad.threshold) == float(out.threshold)

    unclipped = clipping.median_window_clip(grads, rms, tf.zeros([5]), tf.constant(1.0),
                                            tf.constant(3), clipping_scale=None,
                                            clipping_update_period=5, scalar_lr_scale=0.1)
    assert float(unclipped.factor) == 1.0
