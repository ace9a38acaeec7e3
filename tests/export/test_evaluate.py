"""evaluate_tflite on 3 real espeak-ng utterances: every field present and consistent with an
independent recomputation (jiwer on the returned hypotheses, TF-module decoding of the same audio),
sidecar updated, errors."""

import json
import os
import subprocess

import jiwer
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.data.audio import load_audio, write_wav
from tf_todm.data.manifest import Utterance, write_manifest
from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
from tf_todm.export import bundle, evaluate, sidecar, streaming
from tf_todm.models.testing import tiny_config
from tf_todm.models.transducer import Transducer

F = 13
UTTS = [("turn on the lights", "commands", "en"), ("set a timer for ten minutes", "commands", "en-us"),
        ("the weather is lovely today", "open", "en-gb")]


def speech(text, voice="en"):
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", "-s", "170", text], capture_output=True,
                         check=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-e", "floating-point", "-b", "32",
                          "-c", "1", "-"], input=wav, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).copy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tok_path = train_tokenizer(["the quick brown fox jumps over the lazy dog"] + [u[0] for u in UTTS],
                               str(root / "src" / "tok"), 29, "char")
    tokenizer = Tokenizer(tok_path)
    tf.keras.utils.set_random_seed(5)
    model = Transducer(tiny_config(vocab_size=tokenizer.vocab_size, chunk_size=2, left_context=4,
                                   causal_conv=True, predictor_type="stateless", dropout=0.0))
    utterances = []
    for i, (text, domain, voice) in enumerate(UTTS):
        path = str(root / f"u{i}.wav")
        write_wav(path, speech(text, voice))
        utterances.append(Utterance(path, 1.0, text, f"spk{i}", domain))
    write_manifest(str(root / "test.jsonl"), utterances)
    out = str(root / "bundle")
    bundle.export_bundle(model, tok_path, out, "m", ("float32",))
    return root, out, model, tokenizer, utterances


def test_evaluate_fields_and_consistency(exported):
    root, out, model, tokenizer, utterances = exported
    path = os.path.join(out, "m.float32.tflite")
    r = evaluate.evaluate_tflite(path, utterances)
    assert r["num_utterances"] == 3 and len(r["hypotheses"]) == 3
    refs = [h["reference"] for h in r["hypotheses"]]
    hyps = [" ".join(h["hypothesis"].split()) for h in r["hypotheses"]]
    assert r["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert r["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert sorted(r["wer_by_domain"]) == ["commands", "open"]
    assert r["wer_by_domain"]["open"] == pytest.approx(jiwer.wer(refs[2:], hyps[2:]))
    assert r["wer_by_domain"]["commands"] == pytest.approx(jiwer.wer(refs[:2], hyps[:2]))
    audio_s = sum(len(load_audio(u.audio_filepath)) for u in utterances) / 16000
    assert r["audio_seconds"] == pytest.approx(audio_s)
    assert 0 < r["rtf"] < 5
    assert 0 < r["latency_ms_median"] <= r["latency_ms_p90"] < 1000
    assert r["chunk_ms"] == 80.0 and r["num_chunks"] >= audio_s * 1000 / 80 - 1
    assert r["model_bytes"] == os.path.getsize(path)
    assert r["frontend_bytes"] == os.path.getsize(os.path.join(out, "m.frontend.tflite"))
    assert 0 < r["peak_memory_bytes"] < 500_000_000 and r["process_peak_bytes"] > r["peak_memory_bytes"]
    # independent decode: the TF module on the same audio (padded like the recognizer pads)
    module = streaming.StreamingTransducer(streaming.make_adapter(model))
    front = bundle.FrontendStep(module.chunk_frames, F)
    audio = load_audio(utterances[1].audio_filepath)
    padded = np.concatenate([audio, np.zeros(-(len(audio) - 240) % 1280, np.float32)])
    tokens, _ = streaming.stream_module(module, front.features(padded))
    assert r["hypotheses"][1]["hypothesis"] == tokenizer.decode(tokens)
    side = sidecar.load_sidecar(os.path.join(out, "m.float32.json"))
    for key in ("wer", "cer", "rtf", "latency_ms_median", "latency_ms_p90", "peak_memory_bytes", "size_bytes"):
        assert side["metrics"][key] == pytest.approx(r[key] if key != "size_bytes" else r["model_bytes"]), key


def test_max_utterances_and_errors(exported, tmp_path):
    root, out, _, _, utterances = exported
    path = os.path.join(out, "m.float32.tflite")
    r = evaluate.evaluate_tflite(path, utterances, max_utterances=1, measure_memory=False, update_sidecar=False)
    assert r["num_utterances"] == 1 and "peak_memory_bytes" not in r
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(open(path, "rb").read())
    with pytest.raises(sidecar.SidecarError, match="lonely.json: sidecar file not found"):
        evaluate.evaluate_tflite(str(lonely), utterances)
    side = json.load(open(os.path.join(out, "m.float32.json")))
    (tmp_path / "lonely.json").write_text(json.dumps(dict(side, tokenizer_file=None)))
    (tmp_path / "m.frontend.tflite").write_bytes(open(os.path.join(out, "m.frontend.tflite"), "rb").read())
    with pytest.raises(evaluate.EvaluationError, match="tokenizer_file is null"):
        evaluate.evaluate_tflite(str(lonely), utterances)
    (tmp_path / "lonely.json").write_text(json.dumps(dict(side, frontend_file="gone.tflite")))
    with pytest.raises(evaluate.EvaluationError, match="frontend_file 'gone.tflite' not found"):
        evaluate.evaluate_tflite(str(lonely), utterances)
    with pytest.raises(evaluate.EvaluationError, match="no utterances"):
        evaluate.evaluate_tflite(path, [])


def test_fresh_process_evaluation_equals_in_process_and_reports_child_errors(exported, tmp_path):
    root, out, _, _, utterances = exported
    path = os.path.join(out, "m.float32.tflite")
    here = evaluate.evaluate_tflite(path, utterances, measure_memory=False, update_sidecar=False)
    fresh = evaluate.evaluate_tflite_fresh_process(path, utterances, max_utterances=3, measure_memory=False,
                                                   update_sidecar=False)
    assert fresh["hypotheses"] == here["hypotheses"] and len(fresh["hypotheses"]) == 3
    for key in ("wer", "cer", "wer_by_domain", "audio_seconds", "num_chunks", "model_bytes"):
        assert fresh[key] == here[key], key
    assert 0 < fresh["latency_ms_median"] <= fresh["latency_ms_p90"] < 1000
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    with pytest.raises(evaluate.EvaluationError, match="broken.tflite.*fresh process failed: .*"):
        evaluate.evaluate_tflite_fresh_process(str(broken), utterances)
    with pytest.raises(evaluate.EvaluationError, match="no utterances"):
        evaluate.evaluate_tflite_fresh_process(path, [])


def test_needs_int16x8_only_when_full_int8_exceeds_the_ratio_of_float():
    needs_int16x8 = evaluate.needs_int16x8
    assert needs_int16x8({"float32": 0.20, "full_int8": 0.2101}, 1.05)
    assert not needs_int16x8({"float32": 0.20, "full_int8": 0.2099}, 1.05)
    assert needs_int16x8({"float32": 0.0, "full_int8": 0.01}, 1.05)  # a perfect float model
    assert not needs_int16x8({"float32": 0.20, "full_int8": 0.9}, 0.0)  # disabled
    assert not needs_int16x8({"float32": 0.20, "full_int8": 0.9, "int16x8": 0.2}, 1.05)  # already there
    assert not needs_int16x8({"dynamic_int8": 0.20, "full_int8": 0.9}, 1.05)  # no float reference


def test_beam_search_with_lm_in_process_and_fresh_process_agree_and_leave_the_sidecar(exported, tmp_path):
    root, out, _, _, utterances = exported
    path = os.path.join(out, "m.float32.tflite")
    lm_manifest = str(tmp_path / "lm_train.jsonl")
    write_manifest(lm_manifest, [Utterance("unused.wav", 1.0, text, "s", "commands") for text in
                                 ["turn off the lights", "set a timer for five minutes", "the lights are on"]])
    lm = {"train_manifest": lm_manifest, "order": 3, "weight": 0.6, "length_bonus": 0.4}
    side_before = open(os.path.join(out, "m.float32.json")).read()
    here = evaluate.evaluate_tflite(path, utterances, measure_memory=False, beam_size=3, lm=lm)
    assert here["beam_size"] == 3 and here["lm"] == lm
    assert open(os.path.join(out, "m.float32.json")).read() == side_before  # greedy numbers stay
    fresh = evaluate.evaluate_tflite_fresh_process(path, utterances, measure_memory=False, update_sidecar=False,
                                                   beam_size=3, lm=lm)
    assert fresh["hypotheses"] == here["hypotheses"] and fresh["lm"] == lm
    with pytest.raises(evaluate.EvaluationError, match="LM fusion needs beam search"):
        evaluate.evaluate_tflite(path, utterances, beam_size=1, lm=lm)
    with pytest.raises(evaluate.EvaluationError, match="LM weight 0.0: expected > 0"):
        evaluate.evaluate_tflite(path, utterances, beam_size=2, lm=dict(lm, weight=0.0))
    with pytest.raises(evaluate.EvaluationError, match=r"missing \['order'\]"):
        evaluate.evaluate_tflite(path, utterances, beam_size=2, lm={k: v for k, v in lm.items() if k != "order"})
