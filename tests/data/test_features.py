"""LogMelSpectrogram / FeatureNormalizer against a float64 NumPy reference written from the formulas."""
import json
import subprocess

import keras
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from tf_todm.data import features as F


def speak(text: str, path, voice: str = "en-us") -> np.ndarray:
    """Real speech: espeak-ng → sox (16 kHz mono PCM16 wav); returns the float samples read back."""
    cmd = f"espeak-ng -v {voice} --stdout {json.dumps(text)} | sox -t wav - -r 16000 -c 1 -b 16 {path}"
    subprocess.run(cmd, shell=True, check=True, capture_output=True)
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return audio


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return speak("the quick brown fox jumps over seven lazy dogs", tmp_path_factory.mktemp("wav") / "a.wav")


def htk_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def reference_mel_matrix(num_mel, fft_length, rate, low_hz, high_hz):
    """Triangles in HTK-mel space over the rfft bin centres; the DC bin gets no weight."""
    bins_hz = np.linspace(0.0, rate / 2.0, fft_length // 2 + 1)
    bins_mel = htk_mel(bins_hz)
    edges = np.linspace(htk_mel(low_hz), htk_mel(high_hz), num_mel + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bins_mel[:, None] - lower) / (center - lower)
    down = (upper - bins_mel[:, None]) / (upper - center)
    m = np.maximum(0.0, np.minimum(up, down))
    m[0, :] = 0.0
    return m  # [K, M]


def reference_log_mel(wave, num_mel=80, frame=400, step=160, fft=512, rate=16000, low=20.0, high=7600.0):
    wave = np.asarray(wave, np.float64)
    num_frames = 1 + (len(wave) - frame) // step if len(wave) >= frame else 0
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)  # periodic Hann
    frames = np.stack([wave[t * step: t * step + frame] for t in range(num_frames)]) * window
    power = np.abs(np.fft.rfft(frames, n=fft, axis=-1)) ** 2
    return np.log(power @ reference_mel_matrix(num_mel, fft, rate, low, high) + 1e-6)


@pytest.mark.parametrize("n,expected", [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (16001, 98)])
def test_frames_for_samples(n, expected):
    assert F.frames_for_samples(n) == expected
    assert int(F.frames_for_samples(tf.constant(n))) == expected
    assert int(F.frames_for_samples(np.array([n]))[0]) == expected


def test_frames_for_samples_brute_force():
    for n in range(0, 1300, 7):
        starts = [s for s in range(0, n) if s + 400 <= n and s % 160 == 0]
        assert F.frames_for_samples(n) == len(starts)
        if F.frames_for_samples(n) > 0:
            assert F.frames_for_samples(F.samples_for_frames(F.frames_for_samples(n))) == F.frames_for_samples(n)


def test_mel_matrix_matches_htk_reference():
    ours = tf.signal.linear_to_mel_weight_matrix(80, 257, 16000, 20.0, 7600.0).numpy()
    np.testing.assert_allclose(ours, reference_mel_matrix(80, 512, 16000, 20.0, 7600.0), atol=2e-5)


@pytest.mark.parametrize("dft_as_matmul", [False, True])
def test_log_mel_matches_numpy_reference_on_speech(speech, dft_as_matmul):
    ours = F.LogMelSpectrogram(dft_as_matmul=dft_as_matmul)(speech[None, :]).numpy()[0]
    ref = reference_log_mel(speech)
    assert ours.shape == ref.shape == (F.frames_for_samples(len(speech)), 80)
    # Compare where the mel energy is meaningful (>= 1e-4, i.e. log >= -9.2): float32 power of
    # near-silent bins has a large relative error that the 1e-6 floor then exposes.
    loud = ref > np.log(1e-4)
    assert loud.mean() > 0.5
    np.testing.assert_allclose(ours[loud], ref[loud], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, ref, atol=5e-2)


def test_matmul_variant_equals_rfft_variant():
    x = np.random.default_rng(3).uniform(-1, 1, (3, 2345)).astype(np.float32)
    a = F.LogMelSpectrogram(num_mel_bins=13)(x).numpy()
    b = F.LogMelSpectrogram(num_mel_bins=13, dft_as_matmul=True)(x).numpy()
    assert a.shape == (3, F.frames_for_samples(2345), 13)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dft_matrix_is_the_real_dft():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 400))
    m = F.dft_matrix(400, 512)
    spec = np.fft.rfft(x, n=512)
    np.testing.assert_allclose(x @ m, np.concatenate([spec.real, spec.imag], -1), atol=1e-9)


def test_lengths_and_padding(speech):
    layer = F.LogMelSpectrogram()
    lengths = np.array([len(speech), 12345, 399], np.int32)
    batch = np.zeros((3, len(speech)), np.float32)
    for i, n in enumerate(lengths):
        batch[i, :n] = speech[:n]
    feats, feat_lengths = layer(batch, lengths)
    assert feat_lengths.dtype == tf.int32
    assert list(feat_lengths.numpy()) == [F.frames_for_samples(int(n)) for n in lengths]
    one = layer(speech[None, :12345]).numpy()[0]
    np.testing.assert_allclose(feats.numpy()[1, : len(one)], one, atol=1e-5)
    assert np.all(feats.numpy()[1, len(one):] == 0.0)
    assert np.all(feats.numpy()[2] == 0.0)


@pytest.mark.parametrize("chunk_frames", [16, 7])
def test_streaming_chunks_with_240_sample_cache_equal_one_pass(speech, chunk_frames):
    layer = F.LogMelSpectrogram(dft_as_matmul=True)
    full = layer(speech[None, :]).numpy()[0]
    chunk = chunk_frames * F.FRAME_STEP
    cache = speech[: F.STREAM_CACHE_SAMPLES]  # pre-roll primes the cache
    outs = []
    for start in range(F.STREAM_CACHE_SAMPLES, len(speech), chunk):
        new = speech[start: start + chunk]
        buf = np.concatenate([cache, new])
        out = layer(buf[None, :]).numpy()[0]
        if len(new) == chunk:
            assert out.shape[0] == chunk_frames
        outs.append(out)
        cache = buf[-F.STREAM_CACHE_SAMPLES:]
    streamed = np.concatenate(outs)
    assert streamed.shape == full.shape
    # float32 DFT matmuls of different lengths sum in different orders (oneDNN blocking): log values
    # near -10 then differ by ~1e-5 relative, so the tolerance is relative as well as absolute
    np.testing.assert_allclose(streamed, full, rtol=1e-4, atol=1e-4)


def test_streaming_ragged_chunks_with_remainder_cache_equal_one_pass(speech):
    layer = F.LogMelSpectrogram()
    full = layer(speech[None, :8000]).numpy()[0]
    cache, outs, start = np.zeros(0, np.float32), [], 0
    for size in [100, 1037, 5, 399, 2222, 1, 4236]:
        buf = np.concatenate([cache, speech[start: start + size]])
        start += size
        t = F.frames_for_samples(len(buf))
        if t:
            outs.append(layer(buf[None, :]).numpy()[0])
        cache = buf[t * F.FRAME_STEP:]
    assert start == 8000
    np.testing.assert_allclose(np.concatenate(outs), full, atol=1e-4)


def test_layer_config_round_trip_and_symbolic_call():
    layer = F.LogMelSpectrogram(num_mel_bins=13, dft_as_matmul=True, upper_edge_hz=7000.0)
    config = layer.get_config()
    clone = F.LogMelSpectrogram.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    x = np.random.default_rng(1).uniform(-1, 1, (2, 1000)).astype(np.float32)
    np.testing.assert_array_equal(layer(x).numpy(), clone(x).numpy())
    inp = keras.Input((1000,))
    model = keras.Model(inp, layer(inp))
    assert model.output_shape == (None, F.frames_for_samples(1000), 13)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, F.LogMelSpectrogram) and restored.dft_as_matmul


def tflite_ops(model_bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    return interp, {d["op_name"] for d in interp._get_ops_details()}


@pytest.mark.parametrize("dft_as_matmul,expected_fft_op", [(True, None), (False, "RFFT2D")])
def test_converts_with_builtin_ops_only(dft_as_matmul, expected_fft_op):
    layer = F.LogMelSpectrogram(dft_as_matmul=dft_as_matmul)
    fn = tf.function(lambda waveform: {"features": layer(waveform)},
                     input_signature=[tf.TensorSpec([1, 4000], tf.float32, name="waveform")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], layer)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interp, ops = tflite_ops(converter.convert())
    ops.discard("DELEGATE")
    if expected_fft_op is None:
        assert ops <= {"FULLY_CONNECTED", "BATCH_MATMUL", "GATHER", "RESHAPE", "STRIDED_SLICE", "CONCATENATION",
                       "SPLIT", "MUL", "ADD", "LOG"}, ops
    else:
        assert expected_fft_op in ops
    x = np.random.default_rng(2).uniform(-1, 1, (1, 4000)).astype(np.float32)
    out = interp.get_signature_runner()(waveform=x)["features"]
    np.testing.assert_allclose(out, layer(x).numpy(), atol=1e-4)


def test_feature_normalizer_statistics_and_call():
    rng = np.random.default_rng(5)
    feats = rng.normal(3.0, 2.0, (3, 23, 13)).astype(np.float32)
    lengths = np.array([23, 11, 5], np.int32)
    mean, std = F.FeatureNormalizer.statistics([(feats, lengths)])
    valid = np.concatenate([feats[i, :n] for i, n in enumerate(lengths)]).astype(np.float64)
    np.testing.assert_allclose(mean, valid.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, valid.std(0), rtol=1e-6)
    norm = F.FeatureNormalizer(13, mean, std)
    out, out_lengths = norm(feats, lengths)
    np.testing.assert_allclose(out.numpy()[0], (feats[0] - mean) / std, rtol=1e-5, atol=1e-5)
    assert np.all(out.numpy()[2, 5:] == 0)
    clone = F.FeatureNormalizer.from_config(json.loads(json.dumps(norm.get_config())))
    np.testing.assert_allclose(clone(feats).numpy(), norm(feats).numpy())
    with pytest.raises(ValueError, match="shape"):
        F.FeatureNormalizer(13, mean[:5], std)
