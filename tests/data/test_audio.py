"""Tests for tf_todm.data.audio on real files written in tmp dirs."""

import os

import numpy as np
import pytest
import soundfile

from tf_todm.data.audio import AudioError, audio_duration, float_to_pcm16, load_audio, write_wav


def _tone(n=1601, sr=16000, freq=441.0):
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_write_then_load_round_trip_within_pcm16_quantisation(tmp_path):
    x = _tone()
    path = str(tmp_path / "a.wav")
    write_wav(path, x, 16000)
    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", len(x))
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == (len(x),)
    # Reference: independent int16 quantisation in float64.
    expected = np.round(x.astype(np.float64) * 32767) / 32768
    np.testing.assert_allclose(y, expected, atol=1e-7)
    assert audio_duration(path) == pytest.approx(len(x) / 16000)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_write_wav_clips_out_of_range():
    pcm = float_to_pcm16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]))
    np.testing.assert_array_equal(pcm, [-32767, -32767, 0, 16384, 32767, 32767])


def test_flac_and_sphere_are_read(tmp_path):
    x = (_tone(999) * 32767).astype("<i2")
    flac = str(tmp_path / "a.flac")
    soundfile.write(flac, x, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(np.round(load_audio(flac) * 32768).astype(np.int16), x)
    header = (f"NIST_1A\n   1024\nsample_count -i {len(x)}\nsample_rate -i 16000\nchannel_count -i 1\n"
              "sample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_coding -s3 pcm\nend_head\n").encode()
    sph = tmp_path / "a.sph"
    sph.write_bytes(header.ljust(1024, b" ") + x.tobytes())
    np.testing.assert_array_equal(np.round(load_audio(str(sph)) * 32768).astype(np.int16), x)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(str(tmp_path / "nope.wav"))


def test_directory_is_rejected(tmp_path):
    with pytest.raises(AudioError, match="expected an audio file"):
        load_audio(str(tmp_path))


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.wav: audio file is empty"):
        load_audio(str(p))


def test_wav_with_zero_samples(tmp_path):
    p = str(tmp_path / "nosamples.wav")
    soundfile.write(p, np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="nosamples.wav: audio file has 0 samples"):
        load_audio(p)


def test_corrupt_bytes(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 777, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="corrupt.wav: not a readable audio file"):
        load_audio(str(p))


def test_text_file_named_flac(tmp_path):
    p = tmp_path / "text.flac"
    p.write_text("this is not audio\n")
    with pytest.raises(AudioError, match="text.flac: not a readable audio file"):
        load_audio(str(p))


def test_truncated_wav(tmp_path):
    p = str(tmp_path / "trunc.wav")
    write_wav(p, _tone(4001), 16000)
    data = open(p, "rb").read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(AudioError, match="trunc.wav: truncated audio: header announces 8002 data bytes"):
        load_audio(p)


def test_wrong_sample_rate(tmp_path):
    p = str(tmp_path / "eight.wav")
    write_wav(p, _tone(800, 8000), 8000)
    with pytest.raises(AudioError, match="eight.wav: sample rate is 8000 Hz; expected 16000 Hz"):
        load_audio(p)
    assert load_audio(p, expected_sample_rate=8000).shape == (800,)


def test_stereo_rejected_unless_mixed(tmp_path):
    p = str(tmp_path / "stereo.wav")
    left, right = _tone(513), _tone(513, freq=1000.0)
    soundfile.write(p, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="stereo.wav: audio has 2 channels; expected mono"):
        load_audio(p)
    np.testing.assert_allclose(load_audio(p, mix_to_mono=True), (left.astype(np.float64) + right) / 2, atol=1e-7)


def test_write_wav_rejects_multichannel(tmp_path):
    with pytest.raises(AudioError, match=r"shape \[N\]"):
        write_wav(str(tmp_path / "x.wav"), np.zeros((10, 2)), 16000)


def test_truncated_flac(tmp_path):
    p = str(tmp_path / "trunc.flac")
    soundfile.write(p, (_tone(40001) * 32767).astype(np.int16), 16000, subtype="PCM_16")
    data = open(p, "rb").read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(AudioError, match="trunc.flac: (truncated audio|not a readable audio file)"):
        load_audio(p)
