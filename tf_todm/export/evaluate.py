"""On-device evaluation of an exported streaming `.tflite` in LiteRT (1 thread; greedy decoding,
or beam search optionally fused with a token n-gram LM).

`evaluate_tflite(model_path, utterances)` streams every utterance chunk by chunk through
`runtime.StreamingRecognizer` (front end from the sidecar's `frontend_file` when the model takes
features; `beam_size` > 1 runs `tf_todm.decoding.beam.BeamSearch` frame by frame over the LiteRT
predictor and joiner; `lm` = {"train_manifest", "order", "weight", "length_bonus"} fuses a token LM
fitted on that manifest's transcripts with the model's own tokenizer) and returns:

  wer, cer, wer_by_domain {domain: wer}, num_utterances, audio_seconds,
  rtf (total compute / total audio), latency_ms_median / latency_ms_p90 (per chunk: front end +
  encoder + greedy decoding of its frames), chunk_ms (audio per chunk),
  model_bytes (the .tflite), frontend_bytes, total_bytes,
  peak_memory_bytes (VmHWM after loading + streaming one utterance minus VmHWM after the imports,
  measured in a fresh subprocess so earlier work in this process does not hide it), and
  hypotheses [{audio_filepath, reference, hypothesis, domain}], beam_size, lm (the spec or None).
  Peak memory is measured with greedy decoding (the model alone; an LM's tables come on top).

It also writes the measured numbers into the sidecar's `metrics` (`update_sidecar=True`).

`evaluate_tflite_fresh_process` runs the same evaluation in a new Python that imports only this
module (no TensorFlow), as `python -m experiments.evaluate_tflite` and an app do: timings taken in
a process that has trained and converted models (TF thread pools, a large Python heap) are not
an app's timings.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from tf_todm import metrics
from tf_todm.data.audio import load_audio
from tf_todm.data.tokenizer import Tokenizer
from tf_todm.export import runtime, sidecar as sidecar_lib


class EvaluationError(ValueError):
    """Unusable evaluation request (no utterances, no tokenizer, ...); one line naming the file."""


def _resolve(model_path: str, file_name: str | None) -> str | None:
    if not file_name:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), file_name)


def fusion_from_spec(lm: dict | None, tokenizer, side_path: str):
    """The `ShallowFusion` of an LM spec (None -> None): {"train_manifest", "order", "weight",
    "length_bonus"} fits a token LM on the manifest's transcripts with the bundle's tokenizer;
    {"file", "weight", "length_bonus"} loads a shipped backoff LM (`bundle.add_token_lm`)."""
    if lm is None:
        return None
    needed = ("file", "weight", "length_bonus") if "file" in lm else ("train_manifest", "order", "weight",
                                                                      "length_bonus")
    missing = [k for k in needed if k not in lm]
    if missing:
        raise EvaluationError(f"LM spec {lm}: missing {missing}")
    if float(lm["weight"]) <= 0.0:
        raise EvaluationError(f"LM weight {lm['weight']}: expected > 0 (leave the LM out instead)")
    from tf_todm.decoding.beam import ShallowFusion
    from tf_todm.decoding.token_ngram import fit_manifest_lm, load_backoff
    if "file" in lm:
        token_lm = load_backoff(lm["file"])
    else:
        if tokenizer is None:
            raise EvaluationError(f"{side_path}: tokenizer_file is null; an LM over tokens needs the tokenizer")
        token_lm = fit_manifest_lm(lm["train_manifest"], tokenizer, int(lm["order"]))
    if tokenizer is not None and token_lm.vocab_size != tokenizer.vocab_size:
        raise EvaluationError(f"LM over {token_lm.vocab_size} token ids, the bundle's tokenizer has "
                              f"{tokenizer.vocab_size}: not the same tokenizer")
    return ShallowFusion(token_lm, float(lm["weight"]), float(lm["length_bonus"]))


def bundle_lm_spec(model_path: str) -> tuple[dict, int]:
    """(LM spec, beam size) of the LM shipped with a bundle model (sidecar field `lm`)."""
    side_path = sidecar_lib.sidecar_path_for(model_path)
    side = sidecar_lib.load_sidecar(side_path)
    if "lm" not in side:
        raise EvaluationError(f"{side_path}: no 'lm' field; this bundle ships no LM "
                              f"(experiments.export --lm_train_manifest adds one)")
    info = side["lm"]
    path = _resolve(model_path, info["file"])
    if not os.path.isfile(path):
        raise EvaluationError(f"{side_path}: lm.file {info['file']!r} not found beside the model")
    return {"file": path, "weight": info["weight"], "length_bonus": info["length_bonus"]}, int(info["beam_size"])


def load_recognizer(model_path: str, num_threads: int = 1, load_tokenizer: bool = True, beam_size: int = 1,
                    lm: dict | None = None):
    """(StreamingRecognizer, sidecar dict, sidecar path, Tokenizer or None) for an exported model;
    `beam_size` / `lm` as in `evaluate_tflite`."""
    if lm is not None and beam_size < 2:
        raise EvaluationError(f"LM fusion needs beam search (beam_size > 1), got beam_size={beam_size}")
    model = runtime.LiteRTModel(model_path, num_threads=num_threads)  # checks the file is a model
    side_path = sidecar_lib.sidecar_path_for(model_path)
    side = sidecar_lib.load_sidecar(side_path)
    frontend_path = _resolve(model_path, side.get("frontend_file"))
    frontend = None
    if frontend_path is not None:
        if not os.path.isfile(frontend_path):
            raise EvaluationError(f"{side_path}: frontend_file {side['frontend_file']!r} not found beside the model")
        frontend = runtime.LiteRTModel(frontend_path, num_threads=num_threads)
    tok_path = _resolve(model_path, side.get("tokenizer_file"))
    tokenizer = None
    if tok_path is not None and (load_tokenizer or lm is not None):
        if not os.path.isfile(tok_path):
            raise EvaluationError(f"{side_path}: tokenizer_file {side['tokenizer_file']!r} not found beside the model")
        tokenizer = Tokenizer(tok_path)
    fusion = fusion_from_spec(lm, tokenizer, side_path)
    recognizer = runtime.StreamingRecognizer(model, side, frontend=frontend, beam_size=beam_size, fusion=fusion)
    return recognizer, side, side_path, tokenizer


_MEASURE = r"""
import json, sys, numpy as np
from tf_todm.export.runtime import peak_rss_bytes
base = peak_rss_bytes()
from tf_todm.export.evaluate import load_recognizer
audio = np.load(sys.argv[2])
after_import = peak_rss_bytes()
rec = load_recognizer(sys.argv[1])[0]
rec.recognize(audio)
print(json.dumps({"baseline_bytes": base, "after_import_bytes": after_import, "peak_bytes": peak_rss_bytes()}))
"""


def measure_peak_memory(model_path: str, audio: np.ndarray) -> dict:
    """Loads the model (+ front end) and streams `audio` once in a fresh Python; VmHWM numbers.

    `model_delta_bytes` = peak - after imports (model load + streaming run).
    """
    with tempfile.TemporaryDirectory(prefix="tf_todm_mem_") as tmp:
        audio_path = os.path.join(tmp, "audio.npy")
        np.save(audio_path, np.asarray(audio, np.float32))
        proc = runtime.run_fresh_python(_MEASURE, [os.path.abspath(model_path), audio_path], timeout_s=900)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["model_delta_bytes"] = result["peak_bytes"] - result["after_import_bytes"]
    return result


def evaluate_tflite(model_path: str, utterances, max_utterances: int | None = None,
                    measure_memory: bool = True, update_sidecar: bool = True, beam_size: int = 1,
                    lm: dict | None = None) -> dict:
    """Streams `utterances` (`manifest.Utterance` list) through the model; see module docstring.
    The sidecar's `metrics` are only updated for greedy decoding (the app's default)."""
    recognizer, side, side_path, tokenizer = load_recognizer(model_path, beam_size=beam_size, lm=lm)
    if tokenizer is None:
        raise EvaluationError(f"{side_path}: tokenizer_file is null; WER needs the tokenizer beside the model")
    utterances = list(utterances)[: max_utterances] if max_utterances else list(utterances)
    if not utterances:
        raise EvaluationError(f"evaluate_tflite({model_path}): no utterances to evaluate")
    refs, hyps, domains, rows = [], [], [], []
    latencies, compute, audio_total = [], 0.0, 0.0
    first_audio = None
    for utt in utterances:
        audio = load_audio(utt.audio_filepath)
        if first_audio is None:
            first_audio = audio
        result = recognizer.recognize(audio)
        hyp = tokenizer.decode(result.tokens)
        refs.append(utt.text)
        hyps.append(hyp)
        domains.append(utt.domain or "")
        rows.append({"audio_filepath": utt.audio_filepath, "reference": utt.text, "hypothesis": hyp,
                     "domain": utt.domain})
        latencies.extend(result.chunk_latency_s)
        compute += result.compute_s
        audio_total += result.audio_s
    by_domain = {}
    for d in sorted(set(domains)):
        idx = [i for i, x in enumerate(domains) if x == d]
        by_domain[d or "(none)"] = metrics.wer([refs[i] for i in idx], [hyps[i] for i in idx])
    lat_ms = 1000.0 * np.asarray(latencies)
    info = side["streaming"]
    model_bytes = os.path.getsize(model_path)
    front = _resolve(model_path, side.get("frontend_file"))
    frontend_bytes = os.path.getsize(front) if front else 0
    out = {
        "model": os.path.abspath(model_path), "quantization": side["quantization"],
        "num_utterances": len(utterances), "audio_seconds": audio_total,
        "wer": metrics.wer(refs, hyps), "cer": metrics.cer(refs, hyps), "wer_by_domain": by_domain,
        "rtf": compute / max(audio_total, 1e-9),
        "latency_ms_median": float(np.median(lat_ms)), "latency_ms_p90": float(np.percentile(lat_ms, 90)),
        "num_chunks": int(lat_ms.size),
        "chunk_ms": 1000.0 * int(info["chunk_samples"]) / int(side["sample_rate_hz"]),
        "model_bytes": model_bytes, "frontend_bytes": frontend_bytes,
        "total_bytes": model_bytes + frontend_bytes, "num_threads": 1,
        "beam_size": beam_size, "lm": lm,
    }
    if measure_memory:
        mem = measure_peak_memory(model_path, first_audio)
        out["peak_memory_bytes"] = int(mem["model_delta_bytes"])
        out["process_peak_bytes"] = int(mem["peak_bytes"])
    out["hypotheses"] = rows
    if update_sidecar and beam_size == 1:
        measured = {k: out[k] for k in ("wer", "cer", "wer_by_domain", "rtf", "latency_ms_median",
                                        "latency_ms_p90", "num_utterances", "audio_seconds", "total_bytes")
                    if k in out}
        measured["size_bytes"] = model_bytes
        if "peak_memory_bytes" in out:
            measured["peak_memory_bytes"] = out["peak_memory_bytes"]
        side = dict(side, metrics=dict(side.get("metrics") or {}, **measured))
        sidecar_lib.write_sidecar(side_path, side)
    return out


_EVALUATE = r"""
import json, sys
from tf_todm.data.manifest import read_manifest
from tf_todm.export.evaluate import evaluate_tflite
args = json.loads(sys.argv[1])
out = evaluate_tflite(args["model"], read_manifest(args["manifest"]), measure_memory=args["measure_memory"],
                      update_sidecar=args["update_sidecar"], beam_size=args["beam_size"], lm=args["lm"])
with open(args["output_json"], "w") as f:
    json.dump(out, f)
"""


def evaluate_tflite_fresh_process(model_path: str, utterances, max_utterances: int | None = None,
                                  measure_memory: bool = True, update_sidecar: bool = True,
                                  timeout_s: float = 3600, beam_size: int = 1, lm: dict | None = None) -> dict:
    """`evaluate_tflite` in a new Python process (see module docstring); same arguments and result.

    Raises EvaluationError with the child's last error line if it fails."""
    from tf_todm.data.manifest import write_manifest

    utterances = list(utterances)[: max_utterances] if max_utterances else list(utterances)
    if not utterances:
        raise EvaluationError(f"evaluate_tflite({model_path}): no utterances to evaluate")
    with tempfile.TemporaryDirectory(prefix="tf_todm_eval_") as tmp:
        manifest = os.path.join(tmp, "utterances.jsonl")
        write_manifest(manifest, utterances)
        output_json = os.path.join(tmp, "result.json")
        args = {"model": os.path.abspath(model_path), "manifest": manifest, "output_json": output_json,
                "measure_memory": measure_memory, "update_sidecar": update_sidecar,
                "beam_size": beam_size, "lm": lm}
        proc = runtime.run_fresh_python(_EVALUATE, [json.dumps(args)], timeout_s=timeout_s)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise EvaluationError(f"evaluate_tflite({model_path}) in a fresh process failed: {last}")
        with open(output_json, encoding="utf-8") as f:
            return json.load(f)


def compare_models(reference_path: str, candidate_path: str, audios) -> dict:
    """Side-by-side quantization check of two bundle models on the SAME inputs.

    The reference model (e.g. float32) is streamed greedily over each audio (front end from its
    sidecar); every signature call it makes is replayed through the candidate (e.g. full_int8), so
    the numbers isolate the candidate's numerical error from decoding divergence. Returns
    {"encoder_rel_error": ||enc_c - enc_r|| / ||enc_r|| over all frames,
     "joiner_argmax_agreement": fraction of joiner calls with the same argmax,
     "token_sequence_agreement": fraction of audios whose own greedy decodes are identical,
     "num_frames", "num_joiner_calls"}.
    """
    ref_rec = load_recognizer(reference_path, load_tokenizer=False)[0]
    cand_rec = load_recognizer(candidate_path, load_tokenizer=False)[0]
    cand = cand_rec.model
    enc_r, enc_c, same_argmax, same_tokens = [], [], [], []
    for audio in audios:
        calls = []
        original = ref_rec.model.run

        def recording_run(signature, **inputs):
            out = original(signature, **inputs)
            calls.append((signature, inputs, out))
            return out

        ref_rec.model.run = recording_run
        try:
            ref_tokens = ref_rec.recognize(audio).tokens
        finally:
            ref_rec.model.run = original
        for signature, inputs, out in calls:
            got = cand.run(signature, **inputs)
            if signature == "encoder_step":
                enc_r.append(out["enc_proj"][0])
                enc_c.append(got["enc_proj"][0])
            elif signature == "joiner_step":
                same_argmax.append(int(np.argmax(out["logits"][0])) == int(np.argmax(got["logits"][0])))
        same_tokens.append(cand_rec.recognize(audio).tokens == ref_tokens)
    er, ec = np.concatenate(enc_r), np.concatenate(enc_c)
    return {"encoder_rel_error": float(np.linalg.norm(ec - er) / max(np.linalg.norm(er), 1e-12)),
            "joiner_argmax_agreement": float(np.mean(same_argmax)),
            "token_sequence_agreement": float(np.mean(same_tokens)),
            "num_frames": int(er.shape[0]), "num_joiner_calls": len(same_argmax)}


def needs_int16x8(wer_by_mode: dict, ratio: float) -> bool:
    """Whether int8 "hurts" (issue contract: int8 WER <= 1.05x float WER): a phone bundle then also
    gets the int16-activation build. False when disabled (ratio <= 0), when float32 or full_int8 was
    not evaluated, or when int16x8 is already there."""
    if ratio <= 0 or "int16x8" in wer_by_mode or not {"float32", "full_int8"} <= set(wer_by_mode):
        return False
    return wer_by_mode["full_int8"] > ratio * wer_by_mode["float32"]
