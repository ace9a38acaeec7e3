"""On-device evaluation of an exported streaming .tflite in LiteRT (1 thread; greedy, or beam
search with an optional token n-gram LM).

  python -m experiments.evaluate_tflite --model=DIR/asr.full_int8.tflite \
      --manifest=data/default/test.jsonl --output_json=R.json [--max_utterances=200] \
      [--beam_size=4 --lm_train_manifest=corpus/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5]
      [--bundle_lm]   (the LM shipped in the bundle by `experiments.export --lm_train_manifest`)

The LM settings are the ones `experiments.tune_lm_fusion` picks on dev for the Keras model.

Needs the sidecar DIR/asr.full_int8.json (and the front end / tokenizer it names). Writes R.json
(WER, CER, per-domain WER, RTF, per-chunk latency median/p90, sizes, peak memory, hypotheses),
updates the sidecar's measured metrics and prints a table. User errors print one line and exit 1.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "Exported .tflite (sidecar .json beside it).")
_MANIFEST = flags.DEFINE_string("manifest", None, "JSONL manifest to evaluate on.")
_OUTPUT = flags.DEFINE_string("output_json", None, "Result JSON path.")
_MAX = flags.DEFINE_integer("max_utterances", None, "Evaluate only the first N utterances.")
_MEMORY = flags.DEFINE_bool("measure_memory", True, "Measure peak memory in a subprocess.")
_UPDATE = flags.DEFINE_bool("update_sidecar", True, "Write the measured numbers into the sidecar (greedy only).")
_BEAM = flags.DEFINE_integer("beam_size", 1, "1 = greedy search; > 1 = beam search of this width.")
_LM_MANIFEST = flags.DEFINE_string("lm_train_manifest", None, "JSONL manifest whose transcripts fit the "
                                   "fusion LM (the training split; never dev or test).")
_LM_ORDER = flags.DEFINE_integer("lm_order", 6, "Order of the fusion LM (token n-gram, interpolated Kneser-Ney).")
_LM_WEIGHT = flags.DEFINE_float("lm_weight", 0.0, "Shallow-fusion LM weight (0 = no LM; needs --beam_size > 1).")
_LM_BONUS = flags.DEFINE_float("lm_length_bonus", 0.0, "Score added per emitted token when fusing an LM.")
_LM_FILE = flags.DEFINE_string("lm_file", None, "A shipped backoff token LM (a bundle's lm.json.gz) to fuse "
                               "with --lm_weight and --lm_length_bonus instead of fitting one.")
_BUNDLE_LM = flags.DEFINE_bool("bundle_lm", False, "Decode with the LM shipped in the bundle (sidecar 'lm': "
                               "its file, weight, bonus and beam size; --beam_size > 1 overrides the beam).")


def lm_spec(model_path: str) -> tuple[dict | None, int]:
    """(LM spec or None, beam size) of the flags; ValueError naming the flag when they cannot work."""
    if _BUNDLE_LM.value:
        if _LM_WEIGHT.value or _LM_MANIFEST.value or _LM_FILE.value:
            raise ValueError("--bundle_lm decodes with the bundle's own LM; drop --lm_weight / --lm_train_manifest "
                             "/ --lm_file")
        from tf_todm.export.evaluate import bundle_lm_spec
        spec, beam = bundle_lm_spec(model_path)
        return spec, (_BEAM.value if _BEAM.value > 1 else beam)
    if _LM_WEIGHT.value == 0.0:
        for flag in (_LM_FILE, _LM_MANIFEST):
            if flag.value:
                raise ValueError(f"--{flag.name}={flag.value} needs --lm_weight > 0 (and --beam_size > 1)")
        return None, _BEAM.value
    if _BEAM.value < 2:
        raise ValueError(f"--lm_weight={_LM_WEIGHT.value} needs beam search (--beam_size > 1), "
                         f"got --beam_size={_BEAM.value}")
    if _LM_FILE.value:
        if _LM_MANIFEST.value:
            raise ValueError("--lm_file and --lm_train_manifest are two LMs; give one")
        if not os.path.isfile(_LM_FILE.value):
            raise ValueError(f"--lm_file={_LM_FILE.value}: no such file")
        return {"file": _LM_FILE.value, "weight": _LM_WEIGHT.value, "length_bonus": _LM_BONUS.value}, _BEAM.value
    if not _LM_MANIFEST.value:
        raise ValueError("--lm_weight != 0 needs --lm_train_manifest (training transcripts for the LM) or --lm_file")
    return {"train_manifest": _LM_MANIFEST.value, "order": _LM_ORDER.value, "weight": _LM_WEIGHT.value,
            "length_bonus": _LM_BONUS.value}, _BEAM.value


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    for flag in (_MODEL, _MANIFEST, _OUTPUT):
        if not flag.value:
            print(f"error: --{flag.name} is required", file=sys.stderr)
            return 1
    if _MAX.value is not None and _MAX.value < 1:
        print(f"error: --max_utterances={_MAX.value}: expected >= 1", file=sys.stderr)
        return 1
    if _BEAM.value < 1:
        print(f"error: --beam_size={_BEAM.value}: expected >= 1", file=sys.stderr)
        return 1
    try:
        from tf_todm.data.manifest import read_manifest
        from tf_todm.export.evaluate import evaluate_tflite
        from tf_todm.export.runtime import load_model_bytes
        from tf_todm.training.checkpoints import write_json_atomic

        load_model_bytes(_MODEL.value)  # not-a-model errors before reading audio
        lm, beam_size = lm_spec(_MODEL.value)
        utterances = read_manifest(_MANIFEST.value)
        result = evaluate_tflite(_MODEL.value, utterances, _MAX.value, measure_memory=_MEMORY.value,
                                 update_sidecar=_UPDATE.value, beam_size=beam_size, lm=lm)
        result["manifest"] = _MANIFEST.value
        write_json_atomic(_OUTPUT.value, result)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows = [("utterances", result["num_utterances"]), ("WER", f"{result['wer']:.4f}"),
            ("CER", f"{result['cer']:.4f}")]
    rows += [(f"WER[{d}]", f"{w:.4f}") for d, w in result["wer_by_domain"].items()]
    rows += [("RTF (1 thread)", f"{result['rtf']:.4f}"),
             ("chunk latency median ms", f"{result['latency_ms_median']:.2f}"),
             ("chunk latency p90 ms", f"{result['latency_ms_p90']:.2f}"),
             ("chunk audio ms", f"{result['chunk_ms']:.0f}"), ("model bytes", result["model_bytes"]),
             ("front end bytes", result["frontend_bytes"])]
    if "peak_memory_bytes" in result:
        rows.append(("peak memory delta bytes", result["peak_memory_bytes"]))
    for k, v in rows:
        print(f"{k:<26}{v}")
    print(f"wrote {_OUTPUT.value}")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
