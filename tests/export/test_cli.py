"""experiments.export / experiments.evaluate_tflite: user errors are one line + exit 1; a full
export -> evaluate run from a saved .keras subnet (slow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(name, *args, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", f"experiments.{name}", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def assert_one_line_error(proc, pattern):
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and pattern in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_export_flag_errors(tmp_path):
    assert_one_line_error(cli("export", f"--model={tmp_path}/x.keras"), "--out_dir is required")
    assert_one_line_error(cli("export", "--out_dir=" + str(tmp_path), "--mode=float32,int4", "--tokenizer=t"),
                          "--mode: ['int4'] not in")
    tok = tmp_path / "tok.model"
    tok.write_bytes(b"x")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={bad}"), "bad.keras: not a loadable .keras model")


def test_export_of_a_batch_norm_supernets_subnet_re_estimates_its_statistics(tmp_path):
    """--checkpoint + --subnet_json of a conv-module BatchNorm supernet (saved by the trainer's
    Checkpointer): refused without --train_manifest (one line), exported with it."""
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import bad_input_fixtures as F
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.models.config import TransducerConfig
    from tf_todm.models.transducer import Transducer
    from tf_todm.training.checkpoints import Checkpointer, TrainState

    tok = F.tiny_tokenizer(str(tmp_path))
    config = TransducerConfig(model_dim=16, num_blocks=2, ff_dim=24, num_heads=2, conv_dim=12,
                              conv_kernel_size=3, subsampling_channels=4, predictor_dim=12,
                              joiner_dim=16, vocab_size=Tokenizer(tok).vocab_size, dropout=0.0,
                              conv_norm="batch", chunk_size=2, left_context=4, causal_conv=True)
    model = Transducer(config)
    model.encode(tf.zeros([1, 16, config.input_dim]), tf.constant([16]))
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": {}}))
    Checkpointer(str(run / "ckpt"), model, None, TrainState()).save()
    train = F.good_manifest(str(tmp_path), "train.jsonl", num=4)
    subnet = json.dumps({"num_blocks": 1, "ff_dims": [8], "num_heads": [1], "conv_dims": [6],
                         "predictor_dim": 6, "joiner_dim": 8})
    args = [f"--checkpoint={run}", f"--tokenizer={tok}", f"--subnet_json={subnet}", "--mode=float32"]
    assert_one_line_error(cli("export", f"--out_dir={tmp_path / 'a'}", *args),
                          "the supernet has conv-module BatchNorm")
    proc = cli("export", f"--out_dir={tmp_path / 'b'}", *args, f"--train_manifest={train}",
               "--bn_calibration_batches=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "b" / "export_summary.json").read_text())
    assert summary["bn_calibration_batches"] == 1 and summary["models"][0]["mode"] == "float32"


@pytest.mark.slow
def test_export_more_flag_errors(tmp_path):
    tok = tmp_path / "tok.model"
    tok.write_bytes(b"x")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=full_int8",
                              f"--model={tmp_path}/x.keras"), "--train_manifest is required")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", "--mode=float32", f"--checkpoint={tmp_path}/run",
                              f"--tokenizer={tok}", "--subnet_json={\"num_blocks\": 1}"),
                          "--subnet_json: not a SubnetConfig")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", "--mode=float32", f"--checkpoint={tmp_path}/run",
                              f"--tokenizer={tok}"), "run/config.json: missing")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", f"--checkpoint={tmp_path}"),
                          "exactly one of --model")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", "--qat_steps=-1"), "--qat_steps=-1: expected >= 0")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", "--qat_steps=3"), "--qat_steps needs --train_manifest")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", "--finetune_steps=-2"), "--finetune_steps=-2: expected >= 0")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", "--finetune_steps=3"),
                          "--finetune_steps needs --train_manifest")
    assert_one_line_error(cli("export", f"--out_dir={tmp_path}", f"--tokenizer={tok}", "--mode=float32",
                              f"--model={tmp_path}/x.keras", f"--lm_train_text={tmp_path}/none.txt"),
                          f"--lm_train_text={tmp_path}/none.txt: no such file")


def test_evaluate_errors(tmp_path):
    assert_one_line_error(cli("evaluate_tflite", "--manifest=m.jsonl", "--output_json=r.json"), "--model is required")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_one_line_error(cli("evaluate_tflite", f"--model={junk}", "--manifest=m.jsonl", "--output_json=r.json"),
                          "junk.tflite: not a TFLite flatbuffer")
    # a real (tiny) TFLite model without a sidecar
    import tensorflow as tf

    fn = tf.function(lambda x: {"y": x + 1.0}, input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
    model = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()
    (tmp_path / "plain.tflite").write_bytes(model)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "duration": 1.0}\n')
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              "--output_json=r.json"), "m.jsonl:1")
    manifest.write_text("")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--max_utterances=0"), "--max_utterances=0")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--lm_weight=0.5", "--lm_train_manifest=t.jsonl"),
                          "--lm_weight=0.5 needs beam search")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--lm_weight=0.5", "--beam_size=4"),
                          "needs --lm_train_manifest")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--lm_weight=0.5", "--beam_size=4",
                              f"--lm_file={tmp_path}/none.json.gz"), "none.json.gz: no such file")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--lm_weight=0.5", "--beam_size=4",
                              f"--lm_file={manifest}", "--lm_train_manifest=t.jsonl"), "two LMs; give one")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", f"--lm_file={manifest}"), "needs --lm_weight > 0")
    assert_one_line_error(cli("evaluate_tflite", f"--model={tmp_path}/plain.tflite", f"--manifest={manifest}",
                              f"--output_json={tmp_path}/r.json", "--beam_size=4", f"--lm_train_manifest={manifest}"),
                          "--lm_train_manifest=")


@pytest.mark.slow
def test_export_then_evaluate_end_to_end(tmp_path):
    """.keras subnet -> experiments.export (float32 + full_int8, calibration from a train manifest) ->
    experiments.evaluate_tflite on a test manifest: files, sidecar metrics, result JSON."""
    import tensorflow as tf

    from tf_todm.data.audio import write_wav
    from tf_todm.data.manifest import Utterance, write_manifest
    from tf_todm.data.tokenizer import train_tokenizer
    from tf_todm.models.testing import tiny_config
    from tf_todm.models.transducer import Transducer

    texts = [("turn on the lights", "en"), ("set a timer", "en-us"), ("quick brown fox jumps over the lazy dog", "en")]
    utts = []
    for i, (text, voice) in enumerate(texts):
        wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
        raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-e", "floating-point", "-b",
                              "32", "-c", "1", "-"], input=wav, capture_output=True, check=True).stdout
        path = str(tmp_path / f"u{i}.wav")
        write_wav(path, np.frombuffer(raw, np.float32))
        utts.append(Utterance(path, 1.0, text, "s", "commands" if i < 2 else "open"))
    write_manifest(str(tmp_path / "train.jsonl"), utts[:2])
    write_manifest(str(tmp_path / "test.jsonl"), utts[2:] + utts[:1])
    tok = train_tokenizer([t for t, _ in texts], str(tmp_path / "tok"), 29, "char")
    tf.keras.utils.set_random_seed(0)
    model = Transducer(tiny_config(input_dim=80, vocab_size=29, chunk_size=2, left_context=4, causal_conv=True,
                                   predictor_type="stateless", dropout=0.0))
    model.save(str(tmp_path / "sub.keras"))
    out = tmp_path / "out"
    lm_text = tmp_path / "lm_text.txt"  # corpus train text: a sentence no transcript has
    lm_text.write_text("set the lights on\n", encoding="utf-8")
    proc = cli("export", f"--model={tmp_path}/sub.keras", f"--tokenizer={tok}", "--mode=float32",
               "--mode=full_int8", f"--train_manifest={tmp_path}/train.jsonl", f"--out_dir={out}", "--name=sub",
               "--finetune_steps=2", "--qat_steps=2", "--qat_batch_size=2",
               f"--lm_train_manifest={tmp_path}/train.jsonl", f"--lm_train_text={lm_text}", "--lm_order=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == sorted(["export_summary.json", "lm.json.gz", "sub.float32.json",
                                              "sub.float32.tflite", "sub.frontend.tflite", "sub.full_int8.json",
                                              "sub.full_int8.tflite", "tokenizer.model"])
    # The shipped LM is the one fitted on the transcripts AND the text file, not on the transcripts alone.
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.decoding.token_ngram import fit_token_lm, load_backoff
    tokenizer = Tokenizer(tok)
    ids = tokenizer.encode(["set the lights on"])[0]
    shipped = load_backoff(str(out / "lm.json.gz")).sequence_log_prob(ids)
    both = fit_token_lm(["turn on the lights", "set a timer", "set the lights on"], tokenizer, 3)
    transcripts_only = fit_token_lm(["turn on the lights", "set a timer"], tokenizer, 3)
    assert shipped == pytest.approx(both.sequence_log_prob(ids), abs=1e-3)
    assert shipped > transcripts_only.sequence_log_prob(ids) + 1.0
    assert json.load(open(out / "sub.float32.json"))["lm"]["order"] == 3
    summary = json.load(open(out / "export_summary.json"))
    assert summary["calibration_utterances"] == 2
    assert summary["qat"]["steps"] == 2 and np.isfinite(summary["qat"]["loss_last"])
    assert summary["finetune"]["steps"] == 2 and np.isfinite(summary["finetune"]["loss_last"])
    proc = cli("evaluate_tflite", f"--model={out}/sub.full_int8.tflite", f"--manifest={tmp_path}/test.jsonl",
               f"--output_json={tmp_path}/r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.load(open(tmp_path / "r.json"))
    assert r["num_utterances"] == 2 and sorted(r["wer_by_domain"]) == ["commands", "open"]
    assert "WER" in proc.stdout and "RTF" in proc.stdout
    side = json.load(open(out / "sub.full_int8.json"))
    assert side["metrics"]["wer"] == pytest.approx(r["wer"])
    # the shipped LM file given by --lm_file at the sidecar's settings decodes as --bundle_lm does
    lm = side["lm"]
    results = []
    for extra in (["--bundle_lm"], [f"--lm_file={out}/lm.json.gz", f"--lm_weight={lm['weight']}",
                                    f"--lm_length_bonus={lm['length_bonus']}", f"--beam_size={lm['beam_size']}"]):
        proc = cli("evaluate_tflite", f"--model={out}/sub.full_int8.tflite", f"--manifest={tmp_path}/test.jsonl",
                   f"--output_json={tmp_path}/lm.json", "--measure_memory=false", "--update_sidecar=false", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.load(open(tmp_path / "lm.json")))
    assert results[0]["wer"] == results[1]["wer"] and results[0]["cer"] == results[1]["cer"]
