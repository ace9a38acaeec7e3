"""JSON sidecar that travels with every `.tflite` (DESIGN.md section 4).

Fields (all required unless noted):
  format_version: int (1).
  model_file: the .tflite file name (same directory).
  sample_rate_hz: int. features: front-end settings (`tf_todm.data.features.feature_settings()`).
  streaming: `StreamingTransducer.state_info()`: encoder input name, chunk_samples, chunk_frames,
    encoder_frames_per_chunk, prime_samples, win/hop samples, encoder_states / predictor_states
    ({name: {"shape": [...], "dtype": str}}).
  signatures: {name: {"inputs": [...], "outputs": [...]}} as in the model.
  tokenizer_file: SentencePiece model file name (same directory) or null.
  frontend_file (optional): float32 front-end model (same directory) when encoder_step takes
    features (`tf_todm.export.bundle`); streaming then also has chunk_samples / prime_samples.
  blank_id: int. vocab_size: int.
  subnet: SubnetConfig dict or null (full model). model_config: TransducerConfig dict or null.
  quantization: one of `convert.MODES`.
  metrics (optional): measured numbers, e.g. wer, size_bytes, latency_ms_median, rtf.
  lm (optional): the bundle's token LM for beam search with shallow fusion
    (`bundle.add_token_lm`): {"file" (gzipped backoff JSON, same directory), "order", "weight",
    "length_bonus", "beam_size", "size_bytes"}.
"""

from __future__ import annotations

import json
import os
import tempfile

from tf_todm.export.convert import MODES

FORMAT_VERSION = 1

_REQUIRED = {
    "format_version": int, "model_file": str, "sample_rate_hz": int, "features": dict,
    "streaming": dict, "signatures": dict, "blank_id": int, "vocab_size": int, "quantization": str,
}
_OPTIONAL = {"tokenizer_file": (str, type(None)), "frontend_file": (str, type(None)), "subnet": (dict, type(None)),
             "model_config": (dict, type(None)), "metrics": dict, "lm": dict}
_LM_FIELDS = {"file": str, "order": int, "weight": (int, float), "length_bonus": (int, float), "beam_size": int}
_STREAMING_REQUIRED = ("encoder_input", "chunk_frames", "encoder_frames_per_chunk", "prime_samples",
                       "encoder_states", "predictor_states")


class SidecarError(ValueError):
    """A sidecar file is missing, not JSON, or has a missing/ill-typed field (message names both)."""


def validate_sidecar(d: dict, where: str = "sidecar") -> dict:
    """Checks fields and types; returns `d`."""
    if not isinstance(d, dict):
        raise SidecarError(f"{where}: expected a JSON object, got {type(d).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in d:
            raise SidecarError(f"{where}: missing field {key!r}")
        if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
            raise SidecarError(f"{where}: field {key!r} must be {typ.__name__}, got {type(d[key]).__name__}")
    for key, typ in _OPTIONAL.items():
        if key in d and not isinstance(d[key], typ):
            raise SidecarError(f"{where}: field {key!r} has type {type(d[key]).__name__}")
    for key, typ in (_LM_FIELDS.items() if "lm" in d else ()):
        if not isinstance(d["lm"].get(key), typ) or isinstance(d["lm"].get(key), bool):
            raise SidecarError(f"{where}: field 'lm.{key}' missing or of type {type(d['lm'].get(key)).__name__}")
    if d["format_version"] != FORMAT_VERSION:
        raise SidecarError(f"{where}: format_version {d['format_version']}, expected {FORMAT_VERSION}")
    if d["quantization"] not in MODES:
        raise SidecarError(f"{where}: quantization {d['quantization']!r} is not one of {MODES}")
    for key in _STREAMING_REQUIRED:
        if key not in d["streaming"]:
            raise SidecarError(f"{where}: missing field 'streaming.{key}'")
    for group in ("encoder_states", "predictor_states"):
        for name, spec in d["streaming"][group].items():
            if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) or "dtype" not in spec:
                raise SidecarError(f"{where}: streaming.{group}.{name} needs 'shape' (list) and 'dtype'")
    if d["streaming"]["encoder_input"] == "audio" and not d["streaming"].get("chunk_samples"):
        raise SidecarError(f"{where}: streaming.chunk_samples must be set for an audio-input model")
    return d


def write_sidecar(path: str, sidecar: dict) -> None:
    """Validates and writes `sidecar` atomically (temp file in the same directory + rename)."""
    validate_sidecar(sidecar, path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sidecar_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(sidecar, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_sidecar(path: str) -> dict:
    """Reads and validates a sidecar; SidecarError names the file and the field."""
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise SidecarError(f"{path}: sidecar file not found") from None
    except json.JSONDecodeError as e:
        raise SidecarError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    return validate_sidecar(d, path)


def sidecar_path_for(model_path: str) -> str:
    """`x.tflite` -> `x.json`."""
    root, _ = os.path.splitext(model_path)
    return root + ".json"
