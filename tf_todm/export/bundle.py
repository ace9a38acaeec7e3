"""A deployable bundle for one (extracted) subnet: float front end + streaming ASR models + sidecars.

Layout written by `export_bundle(model, tokenizer_path, out_dir, name, modes, ...)`:

  <name>.frontend.tflite   float32, signature `frontend_step(audio [1, chunk_samples], pcm_cache
                           [1, 240]) -> {features [1, chunk_frames, 80], pcm_cache}` (shared by all
                           modes; the log-mel front end is never quantized, see below)
  <name>.<mode>.tflite     `encoder_step(features, *states)`, `predictor_step(token, *states)`,
                           `joiner_step(enc_proj, pred_proj)` (see `streaming.StreamingTransducer`)
  <name>.<mode>.json       the sidecar (`sidecar.py`; plus `frontend_file`, `op_report`, `mcu`)
  tokenizer.model          copy of the SentencePiece model
  (target="mcu") <name>.<mode>.mcu_<signature>.tflite: full-int8, int8-I/O single-signature
                           models checked for TFLite-Micro and run in it (arena in the sidecar).

Why the front end is a separate float32 model: quantizing PCM to 8 bits inside a full-int8
encoder_step costs 0.39 relative error on the features alone (measured by the previous export
work), and the dynamic-range front end is no better. A separate float model keeps it exact in every
mode, costs one extra interpreter call per chunk (~0.1 ms), and lets a microcontroller use its own
audio front end instead (TFLM ships Window/Rfft/FilterBank ops).

`load_trained_model(run_dir)` restores a trainer run folder (`config.json` + `ckpt/`).
"""

from __future__ import annotations

import collections
import functools
import glob
import os
import shutil
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tf_todm.constants import BLANK_ID, SAMPLE_RATE_HZ
from tf_todm.data.features import FRAME_LENGTH, FRAME_STEP, LogMelSpectrogram, feature_settings
from tf_todm.export import convert as convert_lib
from tf_todm.export import op_report, runtime, sidecar as sidecar_lib, streaming
from tf_todm.models.per_model import per_model

DEFAULT_MODES = ("float32", "dynamic_int8", "full_int8")
TARGETS = ("phone", "mcu")
SIGNATURES = ("encoder_step", "predictor_step", "joiner_step")


class BundleError(ValueError):
    """Bad export request or run folder (one-line message naming the file/field)."""


# ---------------------------------------------------------------- front end


class FrontendStep(tf.Module):
    """Streaming log-mel front end: `frontend_step(audio, pcm_cache) -> {features, pcm_cache}`.

    audio [1, chunk_frames * hop] f32 new samples; pcm_cache [1, win - hop] the previous samples
    (primed with the first win - hop samples of the stream). Yields exactly `chunk_frames` frames,
    equal to the one-pass `LogMelSpectrogram` frames (features.py).
    """

    def __init__(self, chunk_frames: int, num_mel_bins: int = 80, win_samples: int = FRAME_LENGTH,
                 hop_samples: int = FRAME_STEP):
        super().__init__(name="frontend")
        self.layer = LogMelSpectrogram(num_mel_bins=num_mel_bins, dft_as_matmul=True)
        self.chunk_frames = int(chunk_frames)
        self.prime_samples = int(win_samples - hop_samples)
        self.chunk_samples = self.chunk_frames * int(hop_samples)
        self.num_mel_bins = int(num_mel_bins)

        def frontend_step(audio, pcm_cache):
            pcm = tf.concat([pcm_cache, audio], axis=1)
            feats = self.layer(pcm)
            return {"features": tf.reshape(feats, [1, self.chunk_frames, self.num_mel_bins]),
                    "pcm_cache": pcm[:, -self.prime_samples:]}

        self.frontend_step = tf.function(frontend_step, input_signature=[
            tf.TensorSpec([1, self.chunk_samples], tf.float32, name="audio"),
            tf.TensorSpec([1, self.prime_samples], tf.float32, name="pcm_cache")])

    def features(self, audio: np.ndarray) -> np.ndarray:
        """One-pass features of a whole utterance [N] -> [T, F] (what the stream reproduces)."""
        return self.layer(tf.constant(np.asarray(audio, np.float32)[None])).numpy()[0]

    def convert(self) -> bytes:
        return convert_lib.convert({"frontend_step": self.frontend_step.get_concrete_function()}, "float32",
                                   trackable=self)


# ---------------------------------------------------------------- loading


def load_trained_model(run_dir: str, subnet_config=None, calibration_batches=None, average_last: int = 1):
    """`tf_todm.training.restore.load_trained_model`, with its errors as BundleError."""
    from tf_todm.training.restore import RunFolderError, load_trained_model as load
    try:
        return load(run_dir, subnet_config, calibration_batches, average_last=average_last)
    except RunFolderError as e:
        raise BundleError(str(e)) from None


def add_token_lm(out_dir: str, name: str, lm, weight: float, length_bonus: float, beam_size: int,
                 file_name: str = "lm.json.gz", min_count: int = 1) -> dict:
    """Ships a token LM with a bundle: writes `lm` (a fitted `TokenNgramLM`, over the bundle
    tokenizer's ids) in backoff form to `out_dir/file_name` (`min_count` > 1 prunes n-grams seen
    fewer times, `TokenNgramLM.to_backoff`) and records it, with the fusion settings, as the `lm`
    field of every `<name>.<mode>.json` sidecar there. Returns that field."""
    from tf_todm.decoding.token_ngram import save_backoff
    if weight <= 0 or beam_size < 2:
        raise BundleError(f"add_token_lm: weight={weight}, beam_size={beam_size}; expected weight > 0 and "
                          f"beam_size >= 2 (fusion runs inside beam search)")
    paths = sorted(p for p in glob.glob(os.path.join(out_dir, f"{glob.escape(name)}.*.json"))
                   if os.path.basename(p)[len(name) + 1:-len(".json")] in convert_lib.MODES)
    if not paths:
        raise BundleError(f"{out_dir}: no {name}.<mode>.json sidecar to add the LM to")
    path = save_backoff(lm, os.path.join(out_dir, file_name), min_count=min_count)
    field = {"file": file_name, "order": int(lm.order), "weight": float(weight), "length_bonus": float(length_bonus),
             "beam_size": int(beam_size), "min_count": int(min_count), "size_bytes": os.path.getsize(path)}
    for side_path in paths:
        sidecar_lib.write_sidecar(side_path, dict(sidecar_lib.load_sidecar(side_path), lm=field))
    return field


# ---------------------------------------------------------------- helpers


def _calibration(module: streaming.StreamingTransducer, frontend: FrontendStep, audios, max_per_signature):
    feats = [frontend.features(a) for a in audios]
    return streaming.representative_dataset(module, feats, max_per_signature)


@per_model
def _streaming_parts(model):
    """(StreamingTransducer, FrontendStep): one module per model, so that its signature functions
    are traced once for calibration (`representative_data`) and conversion (`export_bundle`)
    alike. The functions read the model's variables, so later weight changes are seen."""
    module = streaming.StreamingTransducer(streaming.make_adapter(model))
    return module, FrontendStep(module.chunk_frames, int(module.adapter.input_dim))


def representative_data(model, audios: Iterable[np.ndarray], max_per_signature: int = 200):
    """The calibration samples `export_bundle` would draw from `audios` (float32 [N] 16 kHz TRAINING
    audio) for `model`: a zero-argument generator function of `(signature, inputs)`. Computing it
    once and passing it as `export_bundle(..., representative=...)` to several calls for the same
    model (e.g. a later int16x8 pass) skips re-streaming the audio, the slow part of calibration."""
    audios = [np.asarray(a, np.float32) for a in audios]
    if not audios:
        raise BundleError("representative_data: no audio given")
    module, frontend = _streaming_parts(model)
    return _calibration(module, frontend, audios, max_per_signature)


@functools.lru_cache(maxsize=8)
def _frontend_bytes(chunk_frames: int, num_mel_bins: int) -> bytes:
    """The converted front end (constants only, so one conversion per shape serves every bundle of
    a process: the demo's budgets share it)."""
    return FrontendStep(chunk_frames, num_mel_bins).convert()


def _only(rep, name):
    return lambda: ((n, x) for n, x in rep() if n == name)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype != np.int8:
        return np.asarray(x).astype(dtype)
    scale, zero = detail["quantization"]
    q = np.round(np.asarray(x, np.float64) / scale + zero)
    return np.clip(q, -128, 127).astype(np.int8)


def mcu_check(model_bytes: bytes, signature: str, sample: dict) -> dict:
    """TFLM compatibility + TFLM vs LiteRT on one real (float) sample quantized to the int8 inputs.

    Returns {"arena_bytes", "max_abs_diff_lsb", "mean_abs_diff_lsb", "ops"}.
    """
    report = op_report.check_tflm_compatible(model_bytes)
    lite = runtime.LiteRTModel(model_bytes)
    details = lite.input_details[signature]
    order, out_names = op_report.subgraph_io_order(model_bytes, signature)
    inputs = {n: _quantize(sample[n], details[n]) for n in order}
    lite_out = lite.run(signature, **inputs)
    micro = runtime.MicroModel(model_bytes)
    micro_outs = micro.run(*[inputs[n] for n in order])
    diffs = [np.abs(micro_outs[i].astype(np.int64) - lite_out[n].astype(np.int64)) for i, n in enumerate(out_names)]
    return {"arena_bytes": int(micro.arena_size), "max_abs_diff_lsb": int(max(d.max() for d in diffs)),
            "mean_abs_diff_lsb": float(np.mean(np.concatenate([d.ravel() for d in diffs]))),
            "ops": list(report.ops), "size_bytes": len(model_bytes)}


def _write(path: str, data: bytes):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def base_sidecar(module: streaming.StreamingTransducer, frontend: FrontendStep, model, mode: str,
                 model_file: str, frontend_file: str, report: op_report.OpReport, tokenizer_file,
                 subnet_config) -> dict:
    """The sidecar of one `<name>.<mode>.tflite` (DESIGN.md section 4)."""
    info = module.state_info()
    info.update(chunk_samples=frontend.chunk_samples, prime_samples=frontend.prime_samples,
                frontend_input="audio", frontend_states={
                    "pcm_cache": {"shape": [1, frontend.prime_samples], "dtype": "float32"}})
    config = getattr(model, "config", None)
    return {
        "format_version": sidecar_lib.FORMAT_VERSION, "model_file": model_file,
        "frontend_file": frontend_file, "sample_rate_hz": SAMPLE_RATE_HZ,
        "features": dict(feature_settings(), num_mel_bins=frontend.num_mel_bins), "streaming": info,
        "signatures": report.signatures, "tokenizer_file": tokenizer_file, "blank_id": BLANK_ID,
        "vocab_size": int(config.vocab_size) if config is not None else int(model.joiner.vocab_size),
        "subnet": subnet_config.to_dict() if subnet_config is not None else None,
        "model_config": config.to_dict() if config is not None else None, "quantization": mode,
        "op_report": {"ops": list(report.ops), "tensor_dtypes": list(report.tensor_dtypes),
                      "builtin_only": True},
        "metrics": {"size_bytes": report.size_bytes},
    }


# ---------------------------------------------------------------- main entry


def export_bundle(model, tokenizer_path: str | None, out_dir: str, name: str,
                  modes: Sequence[str] = DEFAULT_MODES, representative_audios: Iterable[np.ndarray] = (),
                  target: str = "phone", subnet_config=None, max_calibration_per_signature: int = 200,
                  representative=None) -> list[dict]:
    """Writes the bundle (module docstring) and returns the sidecar dicts, one per mode.

    Args:
      model: plain (extracted) `Transducer` with streaming settings (chunk_size, left_context,
        causal_conv). tokenizer_path: SentencePiece model copied to `out_dir/tokenizer.model` (or None).
      modes: subset of `convert.MODES`. representative_audios: float32 [N] 16 kHz TRAINING audio for
        the calibrated modes (full_int8, int16x8). target: "phone" or "mcu" (adds the TFLM builds,
        which need full_int8 calibration data). subnet_config: recorded in the sidecar.
      representative: `representative_data(model, audios)` computed earlier for this same model;
        used instead of streaming `representative_audios` again.
    """
    modes = list(dict.fromkeys(modes))
    bad = [m for m in modes if m not in convert_lib.MODES]
    if bad or not modes:
        raise BundleError(f"export_bundle: modes {bad or modes} invalid, expected a non-empty subset of {convert_lib.MODES}")
    if target not in TARGETS:
        raise BundleError(f"export_bundle: target={target!r}, expected one of {TARGETS}")
    if not name or os.sep in name:
        raise BundleError(f"export_bundle: name={name!r} must be a non-empty file stem")
    audios = [np.asarray(a, np.float32) for a in representative_audios]
    needs_data = [m for m in modes if m in convert_lib.CALIBRATION_MODES] or (["mcu"] if target == "mcu" else [])
    if needs_data and not audios and representative is None:
        raise BundleError(f"export_bundle: {needs_data} need representative_audios (training audio)")
    if tokenizer_path is not None and not os.path.isfile(tokenizer_path):
        raise BundleError(f"{tokenizer_path}: tokenizer model not found")
    os.makedirs(out_dir, exist_ok=True)

    module, frontend = _streaming_parts(model)
    frontend_file = f"{name}.frontend.tflite"
    frontend_bytes = _frontend_bytes(frontend.chunk_frames, frontend.num_mel_bins)
    op_report.check_builtin_only(frontend_bytes)
    _write(os.path.join(out_dir, frontend_file), frontend_bytes)
    tokenizer_file = None
    if tokenizer_path is not None:
        tokenizer_file = "tokenizer.model"
        dst = os.path.join(out_dir, tokenizer_file)
        if os.path.abspath(tokenizer_path) != os.path.abspath(dst):
            shutil.copyfile(tokenizer_path, dst)
    rep = representative
    if rep is None and audios:
        rep = _calibration(module, frontend, audios, max_calibration_per_signature)
    signatures = module.signatures()
    sidecars = []
    for mode in modes:
        data = convert_lib.convert(signatures, mode, rep if mode in convert_lib.CALIBRATION_MODES else None)
        report = op_report.check_builtin_only(data)
        model_file = f"{name}.{mode}.tflite"
        _write(os.path.join(out_dir, model_file), data)
        side = base_sidecar(module, frontend, model, mode, model_file, frontend_file, report,
                            tokenizer_file, subnet_config)
        side["metrics"]["frontend_size_bytes"] = len(frontend_bytes)
        if target == "mcu" and mode == "full_int8":
            side["mcu"] = _mcu_builds(module, signatures, rep, out_dir, name, mode)
        sidecar_lib.write_sidecar(os.path.join(out_dir, f"{name}.{mode}.json"), side)
        sidecars.append(side)
    if target == "mcu" and "full_int8" not in modes:
        raise BundleError("export_bundle: target='mcu' needs 'full_int8' among the modes")
    return sidecars


def _mcu_builds(module, signatures, rep, out_dir, name, mode) -> dict:
    """One int8-I/O single-signature model per signature, checked and run in TFLM."""
    samples = collections.defaultdict(list)
    for sig, inputs in rep():
        samples[sig].append(inputs)
    result = {}
    for sig in SIGNATURES:
        data = convert_lib.convert({sig: signatures[sig]}, "full_int8", _only(rep, sig), int8_io=True)
        # a mid-stream sample (states filled), not the all-zero first call
        sample = samples[sig][min(len(samples[sig]) - 1, 3)]
        info = mcu_check(data, sig, sample)
        file = f"{name}.{mode}.mcu_{sig}.tflite"
        _write(os.path.join(out_dir, file), data)
        result[sig] = dict(info, file=file)
    return result
