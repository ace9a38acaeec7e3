"""On-device parity: tflite/stream_asr.py (the app loop) == runtime.StreamingRecognizer (== TF module).

Bundle layout (float front end + features-input models, float32 and full_int8) on real espeak-ng
speech read from WAV files, the older audio-input layout, the WAV reader against soundfile, and the
CLI's one-line errors for unusable WAVs. Model: tiny random-weight Transducer; tokenizer: a real
SentencePiece char model with the model's 7 pieces.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tf_todm.data.features import LogMelSpectrogram
from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
from tf_todm.export import bundle, convert, evaluate, op_report, runtime, sidecar, streaming
from tf_todm.models.testing import tiny_config
from tf_todm.models.transducer import Transducer

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "stream_asr.py")
_spec = importlib.util.spec_from_file_location("stream_asr", SCRIPT)
stream_asr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stream_asr)

TRAIN_TEXTS = ["turn on the kitchen lights at seven", "set a timer for ten minutes"]
TEST_TEXTS = [("remind me to buy milk", "en-us"), ("play some music in the living room", "en")]


def espeak_wav(text, path, voice="en", rate=16000, channels=1, encoding="signed-integer", bits=16):
    """Real synthetic speech: espeak-ng -> sox -> WAV at `rate` Hz, `channels`, `encoding`/`bits`."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    subprocess.run(["sox", "-t", "wav", "-", "-r", str(rate), "-c", str(channels), "-e", encoding, "-b", str(bits),
                    str(path)], input=wav, capture_output=True, check=True)
    return str(path)


@pytest.fixture(scope="module")
def phone_bundle(tmp_path_factory):
    """float32 + full_int8 bundle of a tiny streaming Transducer, with a real tokenizer, + 2 test WAVs."""
    out = tmp_path_factory.mktemp("bundle")
    tf.keras.utils.set_random_seed(0)
    model = Transducer(tiny_config(chunk_size=2, left_context=4, causal_conv=True, predictor_type="stateless",
                                   dropout=0.0))
    tok = train_tokenizer(["abc dab cab", "bad cab dad", "a b c d"], str(out / "src" / "tok"), 7, "char")
    train = [stream_asr.read_wav(espeak_wav(t, out / f"train{i}.wav")) for i, t in enumerate(TRAIN_TEXTS)]
    bundle.export_bundle(model, tok, str(out), "tiny", ("float32", "full_int8"), train,
                         max_calibration_per_signature=60)
    wavs = [espeak_wav(t, out / f"test{i}.wav", voice=v) for i, (t, v) in enumerate(TEST_TEXTS)]
    return out, wavs


@pytest.mark.parametrize("mode", ["float32", "full_int8"])
def test_bundle_app_loop_matches_runtime(phone_bundle, mode, capsys):
    """Front end + features-input model: same tokens as runtime.StreamingRecognizer (the library's
    loader, evaluate.load_recognizer), and the CLI prints the SentencePiece decoding of them."""
    out, wavs = phone_bundle
    path = str(out / f"tiny.{mode}.tflite")
    rec, side, _, tokenizer = evaluate.load_recognizer(path)
    assert side["frontend_file"] == "tiny.frontend.tflite" and rec.frontend is not None
    asr = stream_asr.StreamingAsr(path)
    assert asr.frontend_step is not None and asr.encoder_input == "features"
    nonempty = 0
    for wav in wavs:
        audio = stream_asr.read_wav(wav)
        want = rec.recognize(audio).tokens
        tokens, latencies = asr.recognize(audio)
        assert tokens == want
        assert len(latencies) == max(1, -(-(len(audio) - asr.prime) // asr.chunk))
        nonempty += len(want) > 0
        assert stream_asr.main(["--model", path, "--wav", wav]) == 0
        assert capsys.readouterr().out == tokenizer.decode(want) + "\n"
    assert nonempty == len(wavs)  # random weights still emit tokens: the comparison is not vacuous


def test_app_loop_is_stateful_across_chunks(phone_bundle):
    """Feeding the chunks one by one (as from a microphone) == recognize(); restarting resets every
    state (a second identical stream gives identical tokens)."""
    out, wavs = phone_bundle
    asr = stream_asr.StreamingAsr(str(out / "tiny.float32.tflite"))
    audio = stream_asr.read_wav(wavs[1])
    tokens, _ = asr.recognize(audio)
    assert asr.recognize(audio)[0] == tokens
    asr.start(audio[: asr.prime])
    body = audio[asr.prime:]
    n = len(body) // asr.chunk
    got = []
    for i in range(n):
        got += asr.feed_chunk(body[i * asr.chunk:(i + 1) * asr.chunk])
    tail = np.zeros(asr.chunk, np.float32)
    tail[: len(body) - n * asr.chunk] = body[n * asr.chunk:]
    if len(body) > n * asr.chunk:
        got += asr.feed_chunk(tail)
    assert got == tokens


def test_cli_runs_without_tensorflow(phone_bundle):
    """The script imports only ai_edge_litert / numpy / sentencepiece: run in a fresh Python that
    refuses to import tensorflow or tf_todm; --json output has the tokens of the library runtime."""
    out, wavs = phone_bundle
    path = str(out / "tiny.full_int8.tflite")
    guard = ("import sys, runpy\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('tensorflow', 'tf_todm', 'keras'):\n"
             "            raise ImportError('blocked ' + name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "sys.argv = sys.argv[1:]\n"
             "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", guard, SCRIPT, "--model", path, "--wav", wavs[0], "--json"],
                          capture_output=True, text=True, cwd=str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rec, _, _, tokenizer = evaluate.load_recognizer(path)
    want = rec.recognize(stream_asr.read_wav(wavs[0])).tokens
    assert result["tokens"] == want and result["text"] == tokenizer.decode(want)
    assert result["chunks"] >= 1 and result["rtf"] > 0


def test_read_wav_matches_soundfile(phone_bundle, tmp_path):
    """16-bit PCM and 32-bit float WAVs decode to exactly what soundfile reads."""
    _, wavs = phone_bundle
    ref, rate = soundfile.read(wavs[0], dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(stream_asr.read_wav(wavs[0]), ref)
    fwav = espeak_wav("seven", tmp_path / "f.wav", encoding="floating-point", bits=32)
    ref, _ = soundfile.read(fwav, dtype="float32")
    np.testing.assert_array_equal(stream_asr.read_wav(fwav), ref)


def test_bad_wav_one_line_error(phone_bundle, tmp_path, capsys):
    out, _ = phone_bundle
    model = str(out / "tiny.float32.tflite")
    cases = [
        (espeak_wav("seven", tmp_path / "stereo.wav", channels=2), "stereo.wav: 2 channels; expected mono"),
        (espeak_wav("seven", tmp_path / "low.wav", rate=8000), "low.wav: sample rate 8000 Hz; expected 16000 Hz"),
        (espeak_wav("seven", tmp_path / "u8.wav", encoding="unsigned-integer", bits=8),
         "u8.wav: sample format 1 with 8 bits; expected 16/32-bit PCM or 32-bit float"),
    ]
    (tmp_path / "text.wav").write_text("hello")
    cases.append((str(tmp_path / "text.wav"), "text.wav: not a RIFF/WAVE file"))
    cases.append((str(tmp_path / "missing.wav"), "missing.wav: cannot read"))
    for wav, message in cases:
        assert stream_asr.main(["--model", model, "--wav", wav]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, captured.err)
    with pytest.raises(stream_asr.StreamAsrError, match="tiny.nothing.json: sidecar not found"):
        stream_asr.StreamingAsr(str(out / "tiny.nothing.tflite"))


def test_old_audio_input_layout_matches_tf_module(tmp_path):
    """No frontend_file: encoder_step takes the PCM chunk and carries pcm_cache as a state."""
    tf.keras.utils.set_random_seed(4)
    config = tiny_config(chunk_size=2, left_context=4, causal_conv=True, predictor_type="lstm", dropout=0.0)
    module = streaming.StreamingTransducer(streaming.make_adapter(Transducer(config)),
                                           frontend=LogMelSpectrogram(num_mel_bins=13, dft_as_matmul=True))
    model = convert.convert(module.signatures(), "float32")
    path = str(tmp_path / "m.tflite")
    with open(path, "wb") as f:
        f.write(model)
    side = {"format_version": 1, "model_file": "m.tflite", "sample_rate_hz": 16000, "features": {},
            "streaming": module.state_info(), "signatures": op_report.op_report(model).signatures,
            "blank_id": 0, "vocab_size": 7, "quantization": "float32", "tokenizer_file": None}
    sidecar.write_sidecar(sidecar.sidecar_path_for(path), side)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.normal(size=int(rng.integers(3000, 9000)))).astype(np.float32)
    ref_tokens, _ = streaming.stream_module(module, audio)
    tokens, text, lat = stream_asr.recognize(path, audio)
    lib = runtime.StreamingRecognizer(runtime.LiteRTModel(path), sidecar.load_sidecar(sidecar.sidecar_path_for(path)))
    assert tokens == ref_tokens == lib.recognize(audio).tokens
    assert len(ref_tokens) > 0 and text is None and len(lat) >= 1
    assert stream_asr.StreamingAsr(path).frontend_step is None


def test_measure_in_subprocess_loads_the_bundle_front_end(phone_bundle, tmp_path):
    """runtime.measure_in_subprocess on a features-input model (it needs the sidecar's front end)."""
    out, wavs = phone_bundle
    audio = stream_asr.read_wav(wavs[0])
    r = runtime.measure_in_subprocess(str(out / "tiny.full_int8.tflite"), str(out / "tiny.full_int8.json"),
                                      audio, str(tmp_path))
    assert 0 < r["baseline_bytes"] <= r["after_import_bytes"] <= r["peak_bytes"]
    assert r["model_delta_bytes"] == r["peak_bytes"] - r["after_import_bytes"] >= 0


def test_app_beam_search_with_the_shipped_lm_matches_the_library(phone_bundle, tmp_path, capsys):
    """`bundle.add_token_lm` ships a token LM; the app loop's beam search with it (its own LM reader)
    picks the tokens of runtime.StreamingRecognizer with the library's BeamSearch and
    BackoffTokenLM, for float32 and full_int8; the LM changes the pick; the CLI's --beam prints it."""
    import shutil

    from tf_todm.decoding import fit_token_lm
    folder = tmp_path / "bundle"
    shutil.copytree(phone_bundle[0], folder)
    tokenizer = Tokenizer(str(folder / "tokenizer.model"))
    lm = fit_token_lm(["abc dab cab", "bad cab dad", "a b c d", "dab dab"], tokenizer, order=3)
    field = bundle.add_token_lm(str(folder), "tiny", lm, weight=2.0, length_bonus=0.5, beam_size=3)
    assert field["file"] == "lm.json.gz" and field["size_bytes"] == os.path.getsize(folder / "lm.json.gz")
    audios = [stream_asr.read_wav(w) for w in phone_bundle[1]]
    changed = 0
    for mode in ("float32", "full_int8"):
        path = str(folder / f"tiny.{mode}.tflite")
        assert sidecar.load_sidecar(str(folder / f"tiny.{mode}.json"))["lm"] == field
        spec, beam = evaluate.bundle_lm_spec(path)
        rec = evaluate.load_recognizer(path, beam_size=beam, lm=spec)[0]
        asr = stream_asr.StreamingAsr(path, beam_size=0)  # 0: the beam size the sidecar records
        plain = stream_asr.StreamingAsr(path, beam_size=3, use_lm=False)
        assert asr.beam_size == 3 and asr.lm is not None and plain.lm is None
        for history in ([], [1], [2, 3], [4, 4, 4, 4]):
            np.testing.assert_allclose(asr.lm.log_probs(history)[1:], lm.log_probs(history)[1:], atol=1e-5)
        for audio in audios:
            tokens, _ = asr.recognize(audio)
            assert tokens == rec.recognize(audio).tokens
            changed += tokens != plain.recognize(audio)[0]
    assert changed > 0
    path = str(folder / "tiny.float32.tflite")
    assert stream_asr.main(["--model", path, "--wav", phone_bundle[1][0], "--beam"]) == 0
    want = evaluate.load_recognizer(path, beam_size=3, lm=evaluate.bundle_lm_spec(path)[0])[0].recognize(audios[0])
    assert capsys.readouterr().out == tokenizer.decode(want.tokens) + "\n"


def test_shipped_lm_errors_are_named(phone_bundle, tmp_path):
    out, _ = phone_bundle
    path = str(out / "tiny.float32.tflite")
    with pytest.raises(evaluate.EvaluationError, match="tiny.float32.json: no 'lm' field"):
        evaluate.bundle_lm_spec(path)
    with pytest.raises(stream_asr.StreamAsrError, match="no 'lm' field, so no recorded beam size"):
        stream_asr.StreamingAsr(path, beam_size=0)
    side = sidecar.load_sidecar(str(out / "tiny.float32.json"))
    with pytest.raises(sidecar.SidecarError, match="'lm.order' missing"):
        sidecar.validate_sidecar(dict(side, lm={"file": "lm.json.gz", "weight": 1.0, "length_bonus": 0.0,
                                                "beam_size": 4}))
    with pytest.raises(bundle.BundleError, match="beam_size >= 2"):
        bundle.add_token_lm(str(tmp_path), "tiny", None, weight=1.0, length_bonus=0.0, beam_size=1)
    with pytest.raises(bundle.BundleError, match="no tiny.<mode>.json sidecar"):
        bundle.add_token_lm(str(tmp_path), "tiny", None, weight=1.0, length_bonus=0.0, beam_size=2)
