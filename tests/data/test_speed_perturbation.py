"""Speed perturbation: resampling against numpy float64 interpolation, the pitch it shifts, its
seeded factors, the training config (the pipeline on real speech: tests/data/test_pipeline.py)."""
import numpy as np
import pytest

from tf_todm.data import speed_perturbation as sp
from tf_todm.training.config import ConfigError, TrainConfig


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1, 1.234])
def test_resampling_equals_numpy_interp(factor):
    x = np.random.default_rng(0).standard_normal(1001).astype(np.float32)
    out = sp.speed_perturb(x, factor).numpy()
    n_out = int(np.floor(1000 / factor)) + 1
    ref = np.interp(np.arange(n_out) * factor, np.arange(1001), x.astype(np.float64))
    assert out.shape == (n_out,)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    if factor == 1.0:
        np.testing.assert_array_equal(out, x)


def test_faster_audio_has_higher_pitch():
    rate, f0 = 16000, 440.0
    tone = np.sin(2 * np.pi * f0 * np.arange(rate) / rate).astype(np.float32)
    for factor in (0.9, 1.1):
        out = sp.speed_perturb(tone, factor).numpy()
        spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
        peak_hz = np.argmax(spectrum) * rate / len(out)
        assert abs(peak_hz - f0 * factor) < 2.0, (factor, peak_hz)


def test_factors_are_seeded_bounded_and_spread():
    factors = np.array([float(sp.random_speed_factor(7, i, 0.1)) for i in range(200)])
    again = np.array([float(sp.random_speed_factor(7, i, 0.1)) for i in range(200)])
    other = np.array([float(sp.random_speed_factor(8, i, 0.1)) for i in range(200)])
    np.testing.assert_array_equal(factors, again)
    assert not np.allclose(factors, other)
    assert factors.min() >= 0.9 and factors.max() <= 1.1
    assert factors.min() < 0.92 and factors.max() > 1.08 and abs(factors.mean() - 1.0) < 0.02
    with pytest.raises(ValueError, match=r"max_change must be in \[0, 0.5\), got 0.6"):
        sp.random_speed_factor(0, 0, 0.6)


def test_train_config_checks_the_augmentation_settings():
    assert TrainConfig(speed_perturb=0.1, augment_from_epoch=3).augment_from_epoch == 3
    with pytest.raises(ConfigError, match=r"speed_perturb must be in \[0, 0.5\), got 0.5"):
        TrainConfig(speed_perturb=0.5)
    with pytest.raises(ConfigError, match="augment_from_epoch must be >= 0"):
        TrainConfig(augment_from_epoch=-1)
