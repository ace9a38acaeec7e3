"""VTLP on log-mel features: the warp, the bin interpolation (float64 NumPy reference), a real tone
moving to the predicted bin, the pipeline wiring is tested in test_pipeline.py."""
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.data import vtlp
from tf_todm.data.features import FFT_LENGTH, NUM_MEL_BINS, LogMelSpectrogram

NYQUIST = 8000.0


def reference_warp(f, alpha, knee=4800.0, nyquist=NYQUIST):
    """Jaitly & Hinton (2013), eq. in section 2, written out in float64."""
    f = np.asarray(f, np.float64)
    boundary = knee * min(alpha, 1.0) / alpha
    above = nyquist - (nyquist - knee * min(alpha, 1.0)) / (nyquist - boundary) * (nyquist - f)
    return np.where(f <= boundary, alpha * f, above)


@pytest.mark.parametrize("alpha", [0.8, 0.9, 1.0, 1.07, 1.2])
def test_warp_is_the_papers_piecewise_linear_map(alpha):
    f = np.linspace(0.0, NYQUIST, 4001)
    got = vtlp.vtlp_warp_hz(f, alpha).numpy()
    np.testing.assert_allclose(got, reference_warp(f, alpha), rtol=0, atol=1e-9)
    assert got[0] == 0.0 and abs(got[-1] - NYQUIST) < 1e-9  # both ends fixed
    assert np.all(np.diff(got) > 0)  # increasing
    assert np.max(np.abs(np.diff(got))) < 2 * NYQUIST / 4000 * max(alpha, 1 / alpha)  # continuous (no jump)
    low = f < 4000 * min(alpha, 1) / alpha
    np.testing.assert_allclose(got[low], alpha * f[low], rtol=1e-12)


def test_bin_centres_are_where_tfs_filterbank_peaks():
    weights = tf.signal.linear_to_mel_weight_matrix(NUM_MEL_BINS, FFT_LENGTH // 2 + 1, 16000, 20.0, 7600.0).numpy()
    bin_hz = np.arange(FFT_LENGTH // 2 + 1) * 16000 / FFT_LENGTH
    centres = vtlp.mel_bin_centres_hz()
    assert centres.shape == (NUM_MEL_BINS,) and np.all(np.diff(centres) > 0)
    np.testing.assert_array_less(np.abs(bin_hz[weights.argmax(axis=0)] - centres), 16000 / FFT_LENGTH)


@pytest.mark.parametrize("alpha", [0.9, 1.0, 1.1])
def test_log_mel_warp_matches_numpy_interpolation(alpha):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, NUM_MEL_BINS)).astype(np.float32)
    got = vtlp.vtlp_log_mel(feats, alpha).numpy()
    mel = vtlp.hz_to_mel
    centres = vtlp.mel_bin_centres_hz()
    step = (mel(7600.0) - mel(20.0)) / (NUM_MEL_BINS + 1)
    positions = np.clip((mel(reference_warp(centres, alpha)) - mel(20.0)) / step - 1, 0, NUM_MEL_BINS - 1)
    want = np.stack([np.interp(positions, np.arange(NUM_MEL_BINS), row.astype(np.float64)) for row in feats])
    np.testing.assert_allclose(got, want, atol=1e-5)
    if alpha == 1.0:
        np.testing.assert_allclose(got, feats, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_a_tone_moves_to_the_bin_centred_at_f_over_alpha(alpha):
    tone_hz = 1500.0
    t = np.arange(16000) / 16000.0
    audio = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    feats = LogMelSpectrogram()(audio[None])[0]
    warped = vtlp.vtlp_log_mel(feats, alpha).numpy()
    centres = vtlp.mel_bin_centres_hz()
    peak = int(np.median(warped.argmax(axis=1)))
    expected = int(np.argmin(np.abs(centres - tone_hz / alpha)))
    assert abs(peak - expected) <= 1, (peak, expected)
    assert abs(peak - int(np.median(feats.numpy().argmax(axis=1)))) >= 2  # it did move


def test_factor_is_a_seeded_pure_function_in_range():
    a = [float(vtlp.random_vtlp_factor(3, i, 0.1)) for i in range(200)]
    assert a == [float(vtlp.random_vtlp_factor(3, i, 0.1)) for i in range(200)]
    assert a != [float(vtlp.random_vtlp_factor(4, i, 0.1)) for i in range(200)]
    assert min(a) >= 0.9 and max(a) <= 1.1 and np.std(a) > 0.04
    with pytest.raises(ValueError, match=r"random_vtlp_factor: vtlp must be in \[0, 0.5\), got 0.5"):
        vtlp.random_vtlp_factor(0, 0, 0.5)
    with pytest.raises(ValueError, match=r"random_vtlp_factor: vtlp must be in \[0, 0.5\), got -0.1"):
        vtlp.random_vtlp_factor(0, 0, -0.1)
