"""Vocal tract length perturbation (VTLP, Jaitly & Hinton 2013) on log-mel features.

VTLP imitates a speaker with a longer or shorter vocal tract by warping the frequency axis with a
per-utterance factor `alpha` (Jaitly & Hinton draw it uniformly in [0.9, 1.1]). Their warp is
piecewise linear so the band edge stays in place:

    w(f) = alpha * f                                   for f <= f_hi * min(alpha, 1) / alpha
    w(f) = N - (N - f_hi * min(alpha, 1)) / (N - f_hi * min(alpha, 1) / alpha) * (N - f)  above,

with N the Nyquist frequency and f_hi = 4800 Hz. They apply it to the centre frequencies of the
mel filterbank: warped filter i gathers the energy around `w(c_i)`. Here the same warp is applied
to already computed log-mel features: output bin i is the input linearly interpolated (along the mel
axis) at the fractional bin whose centre is `w(c_i)`. That is the filterbank-resolution form of
VTLP; it leaves duration, frames and lengths unchanged (unlike speed perturbation, which changes
tempo as well as formants), costs one gather per utterance and works on cached features too.
A tone at f Hz (below the warp's knee) moves to the bin whose centre is f / alpha.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_todm.constants import SAMPLE_RATE_HZ
from tf_todm.data import features as feature_settings
from tf_todm.data.seeded_draws import VTLP_STREAM, utterance_uniform

KNEE_HZ = 4800.0
"""f_hi of Jaitly & Hinton: the warp is linear (f -> alpha f) below about this frequency."""


def hz_to_mel(hz):
    """HTK mel scale, as `tf.signal.linear_to_mel_weight_matrix` uses: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_bin_centres_hz(num_mel_bins: int = feature_settings.NUM_MEL_BINS,
                       lower_edge_hz: float = feature_settings.LOWER_EDGE_HZ,
                       upper_edge_hz: float = feature_settings.UPPER_EDGE_HZ) -> np.ndarray:
    """float64 `[num_mel_bins]` centre frequencies (Hz) of the filterbank's triangular bands."""
    edges = np.linspace(hz_to_mel(lower_edge_hz), hz_to_mel(upper_edge_hz), num_mel_bins + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


def vtlp_warp_hz(freqs_hz, alpha, nyquist_hz: float = SAMPLE_RATE_HZ / 2, knee_hz: float = KNEE_HZ):
    """Jaitly & Hinton's piecewise-linear warp `w(f)` (module docstring) of float `freqs_hz` (any
    shape) for scalar `alpha` (a float or a scalar tensor); maps 0 -> 0 and Nyquist -> Nyquist,
    continuous and increasing. Returns a float64 tensor of the same shape."""
    f = tf.convert_to_tensor(freqs_hz, tf.float64)
    alpha = tf.cast(tf.convert_to_tensor(alpha, dtype_hint=tf.float64), tf.float64)
    boundary = knee_hz * tf.minimum(alpha, 1.0) / alpha
    slope_above = (nyquist_hz - knee_hz * tf.minimum(alpha, 1.0)) / (nyquist_hz - boundary)
    return tf.where(f <= boundary, alpha * f, nyquist_hz - slope_above * (nyquist_hz - f))


def warp_positions(alpha, num_mel_bins: int = feature_settings.NUM_MEL_BINS,
                   lower_edge_hz: float = feature_settings.LOWER_EDGE_HZ,
                   upper_edge_hz: float = feature_settings.UPPER_EDGE_HZ) -> tf.Tensor:
    """float64 `[num_mel_bins]`: the fractional input bin each output bin reads, i.e. the bin whose
    centre is `w(c_i)`, clamped to `[0, num_mel_bins - 1]`."""
    centres = mel_bin_centres_hz(num_mel_bins, lower_edge_hz, upper_edge_hz)
    mel_lo, mel_hi = hz_to_mel(lower_edge_hz), hz_to_mel(upper_edge_hz)
    step = (mel_hi - mel_lo) / (num_mel_bins + 1)
    warped = vtlp_warp_hz(centres, alpha)
    mel = 1127.0 * tf.math.log1p(warped / 700.0)
    return tf.clip_by_value((mel - mel_lo) / step - 1.0, 0.0, num_mel_bins - 1.0)


def vtlp_log_mel(features, alpha, lower_edge_hz: float = feature_settings.LOWER_EDGE_HZ,
                 upper_edge_hz: float = feature_settings.UPPER_EDGE_HZ) -> tf.Tensor:
    """Warps one utterance's log-mel features float32 `[T, F]` (the project's filterbank settings)
    by `alpha`: output bin i = input interpolated linearly along the bins at `warp_positions(alpha)[i]`.
    `alpha = 1` returns the input. Returns float32 `[T, F]`."""
    features = tf.convert_to_tensor(features, tf.float32)
    num_bins = features.shape[-1]
    if num_bins is None:
        raise ValueError("vtlp_log_mel: the feature axis (last) must have a static size")
    positions = warp_positions(alpha, num_bins, lower_edge_hz, upper_edge_hz)
    left = tf.minimum(tf.cast(tf.floor(positions), tf.int32), num_bins - 1)
    right = tf.minimum(left + 1, num_bins - 1)
    frac = tf.cast(positions - tf.cast(left, tf.float64), tf.float32)
    return tf.gather(features, left, axis=-1) * (1.0 - frac) + tf.gather(features, right, axis=-1) * frac


def check_max_change(max_change: float, caller: str) -> None:
    """Raises ValueError naming `caller` unless `max_change` (the largest relative warp) is in
    [0, 0.5): a factor must stay positive and the warp monotonic."""
    if not 0.0 <= max_change < 0.5:
        raise ValueError(f"{caller}: vtlp must be in [0, 0.5), got {max_change}")


def random_vtlp_factor(seed: int, index, max_change: float) -> tf.Tensor:
    """The warp factor of utterance `index` (int64 scalar) under pipeline `seed`: float64 scalar
    uniform in `[1 - max_change, 1 + max_change]`, a pure function of (seed, index) and independent
    of the speed-perturbation draw of the same utterance (another stateless stream)."""
    check_max_change(max_change, "random_vtlp_factor")
    return 1.0 + max_change * utterance_uniform(seed, index, [], -1.0, 1.0, VTLP_STREAM, tf.float64)
