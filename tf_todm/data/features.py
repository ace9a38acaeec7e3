"""Log-mel features on `tf.signal`, streaming-exact, with a TFLite builtin-op variant.

Settings (fixed by the on-device contract, recorded in every export sidecar via `feature_settings`):
16 kHz, 25 ms periodic-Hann window (400 samples), 10 ms hop (160), FFT 512, power spectrum, 80 HTK
mel bands from 20 Hz to 7600 Hz (`tf.signal.linear_to_mel_weight_matrix`), `log(mel + 1e-6)`.
No end padding and no centering: frame `t` covers samples `[160 t, 160 t + 400)`, so a stream cut
into chunks, each prefixed with the previous 240 (= 400 - 160) samples, gives exactly the one-pass
frames (see `frames_for_samples`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tf_todm.constants import SAMPLE_RATE_HZ

FRAME_LENGTH = 400
"""Samples per analysis window (25 ms at 16 kHz)."""
FRAME_STEP = 160
"""Hop in samples (10 ms at 16 kHz)."""
FFT_LENGTH = 512
NUM_MEL_BINS = 80
LOWER_EDGE_HZ = 20.0
UPPER_EDGE_HZ = 7600.0
LOG_OFFSET = 1e-6
STREAM_CACHE_SAMPLES = FRAME_LENGTH - FRAME_STEP
"""Samples (240) a streaming front end carries between chunks. With the cache primed by the first
240 samples of the stream, every chunk of `k * FRAME_STEP` new samples yields exactly `k` frames and
leaves the last 240 samples as the next cache; the frames equal the one-pass frames."""


def frames_for_samples(num_samples, frame_length: int = FRAME_LENGTH, frame_step: int = FRAME_STEP):
    """Frames produced from `num_samples` samples without end padding: `1 + (N - L) // S` if N >= L else 0.

    Works on Python ints, NumPy arrays and tensors (int32 in, int32 out for tensors).
    """
    if isinstance(num_samples, (tf.Tensor, tf.Variable)):
        n = tf.cast(num_samples, tf.int32)
        return tf.where(n >= frame_length, 1 + (n - frame_length) // frame_step, tf.zeros_like(n))
    if isinstance(num_samples, np.ndarray):
        n = num_samples.astype(np.int64)
        return np.where(n >= frame_length, 1 + (n - frame_length) // frame_step, 0).astype(np.int32)
    n = int(num_samples)
    return 1 + (n - frame_length) // frame_step if n >= frame_length else 0


def samples_for_frames(num_frames: int, frame_length: int = FRAME_LENGTH, frame_step: int = FRAME_STEP) -> int:
    """Fewest samples that give `num_frames` frames (inverse of `frames_for_samples` for T >= 1)."""
    return 0 if num_frames <= 0 else frame_length + (num_frames - 1) * frame_step


def feature_settings() -> dict:
    """JSON-ready description of the front end, for export sidecars."""
    return {
        "sample_rate_hz": SAMPLE_RATE_HZ, "frame_length": FRAME_LENGTH, "frame_step": FRAME_STEP,
        "fft_length": FFT_LENGTH, "window": "hann_periodic", "spectrum": "power",
        "num_mel_bins": NUM_MEL_BINS, "mel_scale": "htk", "lower_edge_hz": LOWER_EDGE_HZ,
        "upper_edge_hz": UPPER_EDGE_HZ, "log_offset": LOG_OFFSET, "pad_end": False,
        "stream_cache_samples": STREAM_CACHE_SAMPLES,
    }


def dft_matrix(frame_length: int, fft_length: int, window: np.ndarray | None = None) -> np.ndarray:
    """Real DFT as one matrix `[frame_length, 2 * (fft_length // 2 + 1)]` = [cos | -sin] columns.

    `frame @ M` gives (real, imag) of `rfft(frame * window, fft_length)`; the zero padding from
    `frame_length` to `fft_length` contributes nothing, so only `frame_length` rows are kept.
    """
    n = np.arange(frame_length, dtype=np.float64)[:, None]
    k = np.arange(fft_length // 2 + 1, dtype=np.float64)[None, :]
    angle = 2.0 * np.pi * ((n * k) % fft_length) / fft_length
    m = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    if window is not None:
        m = m * np.asarray(window, np.float64)[:, None]
    return m


@keras.saving.register_keras_serializable(package="tf_todm")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform → log-mel spectrogram; no trainable weights.

    Args:
        num_mel_bins: int, default 80.
        sample_rate_hz: int, default 16000.
        frame_length, frame_step, fft_length: ints in samples (400, 160, 512).
        lower_edge_hz, upper_edge_hz: mel filterbank range (20, 7600).
        log_offset: float added before the log (1e-6).
        dft_as_matmul: bool. False: `tf.signal.stft` (RFFT). True: the windowed real DFT as one
            MatMul with a fixed `[frame_length, 2*(fft_length//2+1)]` matrix, so a TFLite model with
            builtin ops only (and TFLite-Micro) can run the front end. Both agree to float tolerance.

    Call args:
        waveform: float32 `[B, N]` in [-1, 1].
        waveform_lengths: optional int32 `[B]` valid samples per row.
    Returns:
        `features` float32 `[B, T, num_mel_bins]` with `T = frames_for_samples(N)`; when
        `waveform_lengths` is given, `(features, feature_lengths)` with frames past each length set to 0.
    """

    def __init__(self, num_mel_bins=NUM_MEL_BINS, sample_rate_hz=SAMPLE_RATE_HZ, frame_length=FRAME_LENGTH,
                 frame_step=FRAME_STEP, fft_length=FFT_LENGTH, lower_edge_hz=LOWER_EDGE_HZ,
                 upper_edge_hz=UPPER_EDGE_HZ, log_offset=LOG_OFFSET, dft_as_matmul=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if fft_length < frame_length:
            raise ValueError(f"LogMelSpectrogram: fft_length={fft_length} must be >= frame_length={frame_length}")
        if not 0 <= lower_edge_hz < upper_edge_hz <= sample_rate_hz / 2:
            raise ValueError(f"LogMelSpectrogram: need 0 <= lower_edge_hz < upper_edge_hz <= {sample_rate_hz / 2}, "
                             f"got {lower_edge_hz}, {upper_edge_hz}")
        self.num_mel_bins = int(num_mel_bins)
        self.sample_rate_hz = int(sample_rate_hz)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.fft_length = int(fft_length)
        self.lower_edge_hz = float(lower_edge_hz)
        self.upper_edge_hz = float(upper_edge_hz)
        self.log_offset = float(log_offset)
        self.dft_as_matmul = bool(dft_as_matmul)
        self.num_spectrogram_bins = self.fft_length // 2 + 1
        self._mel_matrix = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=self.num_mel_bins, num_spectrogram_bins=self.num_spectrogram_bins,
            sample_rate=self.sample_rate_hz, lower_edge_hertz=self.lower_edge_hz,
            upper_edge_hertz=self.upper_edge_hz, dtype=tf.float32)
        self._window = tf.signal.hann_window(self.frame_length, periodic=True, dtype=tf.float32)
        if self.dft_as_matmul:
            self._dft = tf.constant(dft_matrix(self.frame_length, self.fft_length, self._window.numpy()), tf.float32)

    def power_spectrogram(self, waveform):
        """`[B, N]` → `[B, T, fft_length // 2 + 1]` power spectrum."""
        if self.dft_as_matmul:
            frames = tf.signal.frame(waveform, self.frame_length, self.frame_step, pad_end=False)  # (B, T, L)
            spec = tf.matmul(frames, self._dft)  # (B, T, 2K): [real | imag]
            real, imag = tf.split(spec, 2, axis=-1)
            return real * real + imag * imag
        stft = tf.signal.stft(waveform, self.frame_length, self.frame_step, self.fft_length,
                              window_fn=lambda n, dtype: self._window, pad_end=False)
        real, imag = tf.math.real(stft), tf.math.imag(stft)
        return real * real + imag * imag

    def call(self, waveform, waveform_lengths=None):
        waveform = tf.convert_to_tensor(waveform, tf.float32)
        power = self.power_spectrogram(waveform)
        mel = tf.matmul(power, self._mel_matrix)  # (B, T, F)
        features = tf.math.log(mel + self.log_offset)
        if waveform_lengths is None:
            return features
        feature_lengths = frames_for_samples(tf.convert_to_tensor(waveform_lengths, tf.int32),
                                             self.frame_length, self.frame_step)
        mask = tf.sequence_mask(feature_lengths, tf.shape(features)[1], dtype=features.dtype)
        return features * mask[:, :, None], feature_lengths

    def compute_output_spec(self, waveform, waveform_lengths=None):
        n = waveform.shape[1]
        t = None if n is None else frames_for_samples(n, self.frame_length, self.frame_step)
        feats = keras.KerasTensor((waveform.shape[0], t, self.num_mel_bins), dtype="float32")
        if waveform_lengths is None:
            return feats
        return feats, keras.KerasTensor(waveform_lengths.shape, dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(num_mel_bins=self.num_mel_bins, sample_rate_hz=self.sample_rate_hz,
                      frame_length=self.frame_length, frame_step=self.frame_step, fft_length=self.fft_length,
                      lower_edge_hz=self.lower_edge_hz, upper_edge_hz=self.upper_edge_hz,
                      log_offset=self.log_offset, dft_as_matmul=self.dft_as_matmul)
        return config


@keras.saving.register_keras_serializable(package="tf_todm")
class FeatureNormalizer(keras.layers.Layer):
    """Global per-bin mean/std normalisation (statistics from training data, not per utterance).

    Streaming-safe: the statistics are constants. `mean` and `std` are non-trainable weights and are
    also stored in the config so an exported model carries them.

    Args:
        num_features: int, feature dimension F.
        mean, std: optional sequences of F floats (default 0 and 1).

    Call args:
        features: float32 `[B, T, F]`; feature_lengths: optional int32 `[B]` (frames past it stay 0).
    Returns:
        `(features - mean) / std`, and the lengths passed through if given.
    """

    def __init__(self, num_features=NUM_MEL_BINS, mean=None, std=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        mean = np.zeros(self.num_features) if mean is None else np.asarray(mean, np.float64)
        std = np.ones(self.num_features) if std is None else np.asarray(std, np.float64)
        if mean.shape != (self.num_features,) or std.shape != (self.num_features,):
            raise ValueError(f"FeatureNormalizer: mean/std must have shape ({self.num_features},), "
                             f"got {mean.shape} and {std.shape}")
        if np.any(std <= 0):
            raise ValueError("FeatureNormalizer: std must be positive")
        self.mean = self.add_weight(shape=(self.num_features,), initializer=keras.initializers.Constant(mean),
                                    trainable=False, name="mean")
        self.std = self.add_weight(shape=(self.num_features,), initializer=keras.initializers.Constant(std),
                                   trainable=False, name="std")

    @staticmethod
    def statistics(feature_batches, min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Mean/std per bin over valid frames of `(features [B,T,F], lengths [B])` pairs (float64 sums)."""
        total, total_sq, count = 0.0, 0.0, 0
        for features, lengths in feature_batches:
            features = np.asarray(features, np.float64)
            valid = np.arange(features.shape[1])[None, :] < np.asarray(lengths)[:, None]
            x = features[valid]
            total = total + x.sum(0)
            total_sq = total_sq + (x * x).sum(0)
            count += x.shape[0]
        if count == 0:
            raise ValueError("FeatureNormalizer.statistics: no valid frames")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, min_std ** 2))
        return mean, std

    def call(self, features, feature_lengths=None):
        # A multiply by 1/std (folded to a constant on export), not a DIV: TFLite-Micro's int8 DIV
        # is not registered, MUL and SUB are.
        out = (features - self.mean) * tf.math.reciprocal(self.std)
        if feature_lengths is None:
            return out
        mask = tf.sequence_mask(feature_lengths, tf.shape(features)[1], dtype=out.dtype)
        return out * mask[:, :, None], feature_lengths

    def compute_output_spec(self, features, feature_lengths=None):
        out = keras.KerasTensor(features.shape, dtype="float32")
        return out if feature_lengths is None else (out, keras.KerasTensor(feature_lengths.shape, dtype="int32"))

    def set_statistics(self, mean, std) -> None:
        """Assigns new statistics (`[F]` each, std > 0), e.g. from `statistics` on training data."""
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if mean.shape != (self.num_features,) or std.shape != (self.num_features,) or np.any(std <= 0):
            raise ValueError(f"FeatureNormalizer.set_statistics: expected mean/std of shape ({self.num_features},) "
                             f"with std > 0, got {mean.shape}/{std.shape}")
        self.mean.assign(mean)
        self.std.assign(std)

    def get_config(self):
        config = super().get_config()
        config.update(num_features=self.num_features,
                      mean=[float(v) for v in keras.ops.convert_to_numpy(self.mean)],
                      std=[float(v) for v in keras.ops.convert_to_numpy(self.std)])
        return config


def seconds_to_frames(seconds: float) -> int:
    """Frames produced by `seconds` of 16 kHz audio."""
    return frames_for_samples(int(math.floor(seconds * SAMPLE_RATE_HZ + 0.5)))
