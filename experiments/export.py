"""Export one subnet as a deployable on-device bundle (float front end + per-mode .tflite + sidecars).

  python -m experiments.export --model=extracted.keras --tokenizer=tokenizer.model \
      --mode=float32,dynamic_int8,full_int8 --train_manifest=data/default/train.jsonl --out_dir=DIR
  python -m experiments.export --checkpoint=artifacts/run --subnet_json=subnet.json \
      --mode=full_int8 --target=mcu --train_manifest=data/default/train.jsonl --out_dir=DIR

--checkpoint takes a trainer run folder (config.json, ckpt/, tokenizer.model); with --subnet_json
(a file or inline JSON SubnetConfig) the subnet is extracted first. Calibration audio for full_int8
comes from the TRAINING manifest (first --num_calibration_utterances utterances). Writes
DIR/<name>.<mode>.tflite + .json, DIR/<name>.frontend.tflite, DIR/tokenizer.model and
DIR/export_summary.json, and prints a table. User errors print one line and exit 1.

--qat_steps=N (default 0) first fine-tunes the model N steps with fake-quantized weights and
activations (`tf_todm.export.qat.qat_finetune`) on the first --qat_utterances utterances of
--train_manifest; every mode is then converted from the fine-tuned float weights, and the summary
records the QAT losses.

--lm_train_manifest=TRAIN.jsonl ships a token n-gram LM (`--lm_order`, fitted on that manifest's
transcripts with the bundle's tokenizer; `--lm_train_text` adds or instead uses the corpus train text of
`experiments.make_lm_text`) as DIR/lm.json.gz and records it with the fusion settings
(`--lm_weight`, `--lm_length_bonus`, `--lm_beam_size`; choose them on dev with
`experiments.tune_lm_fusion`) in every sidecar; `tflite/stream_asr.py --beam` and
`experiments.evaluate_tflite --bundle_lm` decode with it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

_MODEL = flags.DEFINE_string("model", None, "Extracted subnet saved as .keras (plain Transducer).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Trainer run folder (config.json, ckpt/, tokenizer.model).")
_AVERAGE = flags.DEFINE_integer("average_last", 1, "With --checkpoint: export the mean of the run's newest N "
                                "checkpoints (1 = the newest alone).")
_SUBNET = flags.DEFINE_string("subnet_json", None, "SubnetConfig JSON file or inline JSON (with --checkpoint).")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "SentencePiece model (default: <checkpoint>/tokenizer.model).")
_MODE = flags.DEFINE_multi_string("mode", None, "Quantization mode(s), repeatable or comma list "
                                  "(float32, float16, dynamic_int8, full_int8, int16x8). "
                                  "Default: float32,dynamic_int8,full_int8.")
_TARGET = flags.DEFINE_string("target", "phone", "phone | mcu (mcu adds TFLite-Micro int8 builds).")
_TRAIN_MANIFEST = flags.DEFINE_string("train_manifest", None, "Training JSONL manifest (calibration audio).")
_NUM_CAL = flags.DEFINE_integer("num_calibration_utterances", 20, "Calibration utterances from --train_manifest.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder.")
_NAME = flags.DEFINE_string("name", "asr", "File stem of the bundle's models.")
_QAT_STEPS = flags.DEFINE_integer("qat_steps", 0, "Quantization-aware fine-tuning steps before conversion "
                                  "(tf_todm.export.qat: fake-quantized per-channel int8 weights and int8 "
                                  "activations, exact RNN-T loss on --train_manifest); 0 = none.")
_QAT_LR = flags.DEFINE_float("qat_learning_rate", 1e-4, "Adam learning rate of --qat_steps.")
_FT_STEPS = flags.DEFINE_integer("finetune_steps", 0, "Float fine-tuning steps of the extracted subnet on its own "
                                 "(exact RNN-T loss on --train_manifest, same data flags as QAT), before any QAT; "
                                 "0 = none (the subnet keeps its supernet weights).")
_FT_LR = flags.DEFINE_float("finetune_learning_rate", 3e-4, "Adam learning rate of --finetune_steps.")
_BN_BATCHES = flags.DEFINE_integer(
    "bn_calibration_batches", 8, "With --checkpoint + --subnet_json of a supernet with conv-module "
    "BatchNorm: the subnet's statistics are re-estimated from the first N x 16 --train_manifest "
    "utterances (`calibration_batches`, as the search and the demo do).", allow_override=True)
_LM_MANIFEST = flags.DEFINE_string("lm_train_manifest", None, "Ship a token LM fitted on this (training) "
                                   "manifest's transcripts; never dev or test.")
_LM_TEXT = flags.DEFINE_string("lm_train_text", None, "Ship a token LM fitted on this UTF-8 text file, one "
                               "sentence per line (`experiments.make_lm_text`'s corpus train text), after "
                               "--lm_train_manifest's transcripts if both are given; never dev or test text.")
_LM_ORDER = flags.DEFINE_integer("lm_order", 6, "Order of the shipped token n-gram LM.")
_LM_WEIGHT = flags.DEFINE_float("lm_weight", 0.7, "Shallow-fusion weight recorded with the shipped LM.")
_LM_BONUS = flags.DEFINE_float("lm_length_bonus", 1.5, "Per-token bonus recorded with the shipped LM.")
_LM_BEAM = flags.DEFINE_integer("lm_beam_size", 4, "Beam width recorded with the shipped LM.")
_LM_MIN_COUNT = flags.DEFINE_integer("lm_min_count", 1, "Prune the shipped LM's n-grams (orders >= 2) seen fewer "
                                     "times than this (1 = keep all).")
_QAT_BATCH = flags.DEFINE_integer("qat_batch_size", 8, "Utterances per QAT batch.")
_QAT_UTTS = flags.DEFINE_integer("qat_utterances", 256, "QAT uses the first N --train_manifest utterances.")


class CliError(ValueError):
    pass


def finetune(model, tokenizer, label: str, steps: int, learning_rate: float, **bits):
    """`qat_finetune` of `model` in place for `steps` steps (None when 0); prints and returns a summary."""
    if not steps:
        return None
    from tf_todm.export.qat import qat_finetune

    history = qat_finetune(model, qat_batches(tokenizer, steps), steps, learning_rate=learning_rate, **bits)
    losses = history["losses"]
    print(f"{label}: {history['steps']} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return {"steps": history["steps"], "learning_rate": learning_rate, "loss_first": losses[0],
            "loss_last": losses[-1], "seconds": history["seconds"]}


def parse_modes(values) -> list[str]:
    from tf_todm.export.bundle import DEFAULT_MODES
    from tf_todm.export.convert import MODES

    modes = [m.strip() for v in (values or []) for m in v.split(",") if m.strip()] or list(DEFAULT_MODES)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise CliError(f"--mode: {bad} not in {list(MODES)}")
    return list(dict.fromkeys(modes))


def parse_subnet(text: str):
    from tf_todm.models.elastic_space import SubnetConfig

    where = "--subnet_json"
    if os.path.isfile(text):
        where = text
        with open(text) as f:
            text = f.read()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{where}:{e.lineno}: not valid JSON ({e.msg}); expected a SubnetConfig object "
                       "or the path of a file holding one") from None
    if isinstance(d, dict) and "subnet" in d and isinstance(d["subnet"], dict):
        d = d["subnet"]  # a sidecar / search result entry
    if not isinstance(d, dict):
        raise CliError(f"{where}: expected a JSON object (SubnetConfig), got {type(d).__name__}")
    try:
        return SubnetConfig.from_dict(d)
    except (TypeError, KeyError, ValueError) as e:
        raise CliError(f"{where}: not a SubnetConfig ({e})") from None


def load_model(tokenizer_path: str):
    """(model, SubnetConfig or None, BatchNorm re-estimation batches used)."""
    import keras

    if bool(_MODEL.value) == bool(_CHECKPOINT.value):
        raise CliError("give exactly one of --model=X.keras or --checkpoint=RUN_DIR")
    if _SUBNET.value and not _CHECKPOINT.value:
        raise CliError("--subnet_json needs --checkpoint (a .keras model is already extracted)")
    if _MODEL.value:
        path = _MODEL.value
        if not os.path.isfile(path):
            raise CliError(f"{path}: no such model file")
        import tf_todm.models  # noqa: F401  (registers the layers)
        from tf_todm.models.transducer import Transducer

        try:
            model = keras.saving.load_model(path)
        except Exception as e:
            raise CliError(f"{path}: not a loadable .keras model ({str(e).strip().splitlines()[0][:200]})") from None
        if not isinstance(model, Transducer):
            raise CliError(f"{path}: expected a tf_todm Transducer, got {type(model).__name__}")
        return model, None, 0
    from tf_todm.export.bundle import load_trained_model

    subnet = parse_subnet(_SUBNET.value) if _SUBNET.value else None
    calibration = subnet_calibration(subnet, tokenizer_path)
    model = load_trained_model(_CHECKPOINT.value, subnet, calibration, average_last=_AVERAGE.value)
    return model, subnet, len(calibration or [])


def subnet_calibration(subnet, tokenizer_path: str):
    """BatchNorm re-estimation batches for an extracted subnet (None without subnet or
    --train_manifest; `load_trained_model` refuses a BatchNorm supernet's subnet without them)."""
    if subnet is None or not _TRAIN_MANIFEST.value:
        return None
    if _BN_BATCHES.value < 1:
        raise CliError(f"--bn_calibration_batches={_BN_BATCHES.value}: expected >= 1")
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.models.batch_norm_calibration import calibration_batches

    return calibration_batches(read_manifest(_TRAIN_MANIFEST.value), Tokenizer(tokenizer_path),
                               batch_size=16, num_batches=_BN_BATCHES.value)


def calibration_audio(needed: bool):
    from tf_todm.data.audio import load_audio
    from tf_todm.data.manifest import read_manifest

    if not _TRAIN_MANIFEST.value:
        if needed:
            raise CliError("--train_manifest is required for full_int8 / int16x8 / --target=mcu (calibration audio)")
        return []
    utts = read_manifest(_TRAIN_MANIFEST.value)[: max(1, _NUM_CAL.value)]
    if not utts:
        raise CliError(f"{_TRAIN_MANIFEST.value}: no utterances")
    return [load_audio(u.audio_filepath) for u in utts]


def qat_batches(tokenizer_path: str, steps: int):
    """`steps` numpy batch dicts from --train_manifest (shuffled, repeated as needed)."""
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.pipeline import make_dataset
    from tf_todm.data.tokenizer import Tokenizer

    utts = read_manifest(_TRAIN_MANIFEST.value)[: max(1, _QAT_UTTS.value)]
    dataset = make_dataset(utts, Tokenizer(tokenizer_path), batch_size=_QAT_BATCH.value, training=True, seed=0)
    keys = ("features", "feature_lengths", "labels", "label_lengths")
    return [{k: b[k].numpy() for k in keys} for b in dataset.repeat().take(steps)]


def check_lm_flags() -> None:
    """Refuses unusable --lm_* settings before the (long) export starts."""
    if not _LM_MANIFEST.value and not _LM_TEXT.value:
        return
    if _LM_ORDER.value < 1:
        raise CliError(f"--lm_order={_LM_ORDER.value}: expected >= 1")
    if _LM_WEIGHT.value <= 0:
        raise CliError(f"--lm_weight={_LM_WEIGHT.value}: expected > 0 for a shipped LM")
    if _LM_MIN_COUNT.value < 1:
        raise CliError(f"--lm_min_count={_LM_MIN_COUNT.value}: expected >= 1")
    if _LM_BEAM.value < 2:
        raise CliError(f"--lm_beam_size={_LM_BEAM.value}: expected >= 2 (fusion runs inside beam search)")
    for flag, path in (("lm_train_manifest", _LM_MANIFEST.value), ("lm_train_text", _LM_TEXT.value)):
        if path and not os.path.isfile(path):
            raise CliError(f"--{flag}={path}: no such file")


def ship_lm(tokenizer_path: str) -> dict:
    """Fits the token LM on --lm_train_manifest and/or --lm_train_text and adds it to the bundle
    (`bundle.add_token_lm`)."""
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.decoding.token_ngram import fit_token_lm, lm_training_texts
    from tf_todm.export.bundle import add_token_lm
    lm = fit_token_lm(lm_training_texts(_LM_MANIFEST.value, _LM_TEXT.value), Tokenizer(tokenizer_path),
                      _LM_ORDER.value)
    return add_token_lm(_OUT_DIR.value, _NAME.value, lm, _LM_WEIGHT.value, _LM_BONUS.value, _LM_BEAM.value,
                        min_count=_LM_MIN_COUNT.value)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    try:
        if not _OUT_DIR.value:
            raise CliError("--out_dir is required")
        if _TARGET.value not in ("phone", "mcu"):
            raise CliError(f"--target={_TARGET.value!r}: expected phone or mcu")
        modes = parse_modes(_MODE.value)
        if _TARGET.value == "mcu" and "full_int8" not in modes:
            raise CliError("--target=mcu needs full_int8 among --mode")
        tokenizer = _TOKENIZER.value
        if tokenizer is None and _CHECKPOINT.value:
            tokenizer = os.path.join(_CHECKPOINT.value, "tokenizer.model")
        if tokenizer is None:
            raise CliError("--tokenizer is required with --model")
        if not os.path.isfile(tokenizer):
            raise CliError(f"{tokenizer}: tokenizer model not found")
        from tf_todm.export.convert import CALIBRATION_MODES

        if _QAT_STEPS.value < 0:
            raise CliError(f"--qat_steps={_QAT_STEPS.value}: expected >= 0")
        if _QAT_STEPS.value and not _TRAIN_MANIFEST.value:
            raise CliError("--qat_steps needs --train_manifest (fine-tuning data)")
        if _FT_STEPS.value < 0:
            raise CliError(f"--finetune_steps={_FT_STEPS.value}: expected >= 0")
        if _FT_STEPS.value and not _TRAIN_MANIFEST.value:
            raise CliError("--finetune_steps needs --train_manifest (fine-tuning data)")
        check_lm_flags()
        audios = calibration_audio(bool(set(modes) & set(CALIBRATION_MODES)) or _TARGET.value == "mcu")
        model, subnet, bn_batches = load_model(tokenizer)
        # Float fine-tuning is QAT with quantization off (qat_finetune's control arm).
        finetune_summary = finetune(model, tokenizer, "fine-tuning", _FT_STEPS.value, _FT_LR.value,
                                    weight_bits=None, activation_bits=None)
        qat_summary = finetune(model, tokenizer, "QAT", _QAT_STEPS.value, _QAT_LR.value)
        from tf_todm.export.bundle import export_bundle

        start = time.perf_counter()
        sidecars = export_bundle(model, tokenizer, _OUT_DIR.value, _NAME.value, modes, audios,
                                 target=_TARGET.value, subnet_config=subnet)
        summary = {"argv": sys.argv, "out_dir": os.path.abspath(_OUT_DIR.value), "target": _TARGET.value,
                   "calibration_utterances": len(audios), "wall_time_s": time.perf_counter() - start,
                   "qat": qat_summary, "finetune": finetune_summary, "bn_calibration_batches": bn_batches,
                   "models": [{"mode": s["quantization"], "file": s["model_file"],
                               "size_bytes": s["metrics"]["size_bytes"], "mcu": s.get("mcu")} for s in sidecars]}
        if _LM_MANIFEST.value or _LM_TEXT.value:
            summary["lm"] = ship_lm(tokenizer)
        from tf_todm.training.checkpoints import write_json_atomic

        write_json_atomic(os.path.join(_OUT_DIR.value, "export_summary.json"), summary)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{'mode':<14}{'file':<40}{'bytes':>10}")
    for m in summary["models"]:
        print(f"{m['mode']:<14}{m['file']:<40}{m['size_bytes']:>10}")
        for sig, info in (m["mcu"] or {}).items():
            print(f"  mcu {sig:<12} arena {info['arena_bytes']} B, TFLM vs LiteRT max {info['max_abs_diff_lsb']} LSB")
    if "lm" in summary:
        print(f"{'token LM':<14}{summary['lm']['file']:<40}{summary['lm']['size_bytes']:>10}")
    print(f"wrote {summary['out_dir']}")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
