"""Audio file I/O: strict loading to mono float32 and atomic 16-bit WAV writing.

`load_audio` reads WAV / FLAC / OGG and uncompressed NIST SPHERE (TED-LIUM `.sph`) with
`soundfile` (libsndfile); if libsndfile refuses a `.sph` file, it falls back to `sox`.
Every problem a user can cause raises `AudioError` naming the file and what was expected.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np
import soundfile

from tf_todm.constants import SAMPLE_RATE_HZ


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and what was expected."""


def _read_with_sox(path: str) -> tuple[np.ndarray, int]:
    """Decodes any sox-readable file to 16-bit WAV in memory. Returns ([N, C] float32, rate)."""
    if shutil.which("sox") is None:
        raise AudioError(f"{path}: libsndfile cannot read this file and sox is not installed")
    proc = subprocess.run(["sox", path, "-t", "wav", "-b", "16", "-"], capture_output=True)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = message[-1] if message else f"sox exit code {proc.returncode}"
        raise AudioError(f"{path}: not a readable audio file ({reason})")
    data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return data, rate


def check_wav_complete(path: str) -> None:
    """libsndfile silently shortens a WAV whose data chunk runs past the end of the file; we refuse it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk_id == b"data":
                if chunk_size != 0xFFFFFFFF and offset + 8 + chunk_size > size:
                    raise AudioError(f"{path}: truncated audio: header announces {chunk_size} data bytes, "
                                     f"only {size - offset - 8} present")
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _read(path: str) -> tuple[np.ndarray, int]:
    """Returns ([N, C] float32 samples, sample rate) or raises AudioError."""
    check_wav_complete(path)
    try:
        info = soundfile.info(path)
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        if path.lower().endswith(".sph"):
            return _read_with_sox(path)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason}); expected WAV, FLAC, OGG or SPHERE") from None
    if info.frames > 0 and data.shape[0] < info.frames:
        raise AudioError(f"{path}: truncated audio: header announces {info.frames} samples, only {data.shape[0]} present")
    return data, rate


def load_audio(path: str, expected_sample_rate: int = SAMPLE_RATE_HZ, mix_to_mono: bool = False) -> np.ndarray:
    """Loads an audio file as mono float32 samples in [-1, 1].

    Args:
      path: WAV, FLAC, OGG or uncompressed SPHERE file.
      expected_sample_rate: required rate in Hz (no silent resampling); `None` accepts any rate.
      mix_to_mono: average the channels of a multi-channel file instead of raising.

    Returns:
      float32 `[N]`, N > 0.

    Raises:
      AudioError: missing, unreadable, truncated or empty file, wrong sample rate, or more than
        one channel without `mix_to_mono`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: audio file does not exist")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: expected an audio file, found a directory or special file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    data, rate = _read(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file has 0 samples; expected speech")
    if expected_sample_rate is not None and rate != expected_sample_rate:
        raise AudioError(f"{path}: sample rate is {rate} Hz; expected {expected_sample_rate} Hz (resample it first)")
    channels = data.shape[1]
    if channels > 1:
        if not mix_to_mono:
            raise AudioError(f"{path}: audio has {channels} channels; expected mono (or pass mix_to_mono=True)")
        samples = data.mean(axis=1)
    else:
        samples = data[:, 0]
    return np.ascontiguousarray(samples, dtype=np.float32)


def audio_duration(path: str) -> float:
    """Duration in seconds read from the header (no decoding). Raises AudioError."""
    try:
        info = soundfile.info(os.fspath(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({e})") from None
    return info.frames / float(info.samplerate)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float `[N]` in [-1, 1] -> int16 `[N]`, clipped, rounded to nearest."""
    scaled = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767.0
    return np.round(scaled).astype(np.int16)


def write_wav(path: str, samples: np.ndarray, sample_rate: int = SAMPLE_RATE_HZ) -> None:
    """Writes mono 16-bit PCM WAV atomically (temp file in the same folder + `os.replace`).

    Args:
      path: destination `.wav`; its folder must exist.
      samples: float `[N]` in [-1, 1] (clipped) or int16 `[N]`.
      sample_rate: Hz.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise AudioError(f"{path}: write_wav expects mono samples of shape [N], got {samples.shape}")
    pcm = samples if samples.dtype == np.int16 else float_to_pcm16(samples)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        soundfile.write(tmp, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
