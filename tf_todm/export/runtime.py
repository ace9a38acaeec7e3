"""On-device runners: LiteRT (streaming greedy transducer decoding) and TFLite-Micro.

`LiteRTModel` wraps `ai_edge_litert.interpreter.Interpreter` with input validation (wrong name /
shape / dtype -> `InputError` naming the signature, the input and what was expected).
`StreamingRecognizer` is the loop an app copies: prime the pcm cache, feed fixed-size chunks to
`encoder_step`, and for every encoder frame run `joiner_step` / `predictor_step` greedily (at most
`max_symbols_per_frame` tokens per frame). `MicroModel` runs a single-signature full-int8 model in
the TFLite-Micro Python interpreter and finds the smallest arena that allocates.

Peak memory (`peak_rss_bytes`) is read from /proc/self/status VmHWM (the process' resident-set
high-water mark), so callers measure it in a fresh subprocess (`measure_in_subprocess`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

from tf_todm.constants import BLANK_ID
from tf_todm.export.op_report import ModelCheckError, parse_model


class InputError(ValueError):
    """A signature was called with a missing/unknown input or a wrong shape/dtype."""


def load_model_bytes(path: str) -> bytes:
    """Reads a .tflite file; raises ModelCheckError naming the file if it is not a TFLite model."""
    if not os.path.isfile(path):
        raise ModelCheckError(f"{path}: no such model file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        parse_model(data)
    except ModelCheckError as e:
        raise ModelCheckError(f"{path}: {e}") from None
    return data


class LiteRTModel:
    """A `.tflite` model in LiteRT with validated signature calls.

    Args:
      model: path or flatbuffer bytes. num_threads: CPU threads (1 for the RTF contract).
    """

    def __init__(self, model: str | bytes, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        data = load_model_bytes(model) if isinstance(model, str) else bytes(model)
        if not isinstance(model, str):
            parse_model(data)
        self.model_bytes = data
        self.interpreter = Interpreter(model_content=data, num_threads=num_threads)
        self.signature_names = sorted(self.interpreter.get_signature_list())
        self._runners = {n: self.interpreter.get_signature_runner(n) for n in self.signature_names}
        self.input_details = {n: r.get_input_details() for n, r in self._runners.items()}
        self.output_details = {n: r.get_output_details() for n, r in self._runners.items()}

    def run(self, signature: str, **inputs) -> dict:
        """Validates `inputs` against the signature, runs it, returns {output name: array}."""
        if signature not in self._runners:
            raise InputError(f"no signature {signature!r}; the model has {self.signature_names}")
        expected = self.input_details[signature]
        missing = sorted(set(expected) - set(inputs))
        unknown = sorted(set(inputs) - set(expected))
        if missing or unknown:
            raise InputError(f"signature {signature!r}: missing inputs {missing}, unknown inputs {unknown}")
        for name, value in inputs.items():
            detail = expected[name]
            arr = np.asarray(value)
            want_shape = tuple(int(d) for d in detail["shape"])
            want_dtype = np.dtype(detail["dtype"])
            if arr.shape != want_shape or arr.dtype != want_dtype:
                raise InputError(
                    f"signature {signature!r} input {name!r}: expected shape {list(want_shape)} "
                    f"{want_dtype.name}, got shape {list(arr.shape)} {arr.dtype.name}"
                )
        return self._runners[signature](**inputs)


@dataclasses.dataclass
class StreamResult:
    """tokens: decoded ids; chunk_latency_s: wall time per chunk (encoder + decoding);
    audio_s: audio duration; compute_s: total compute; rtf = compute_s / audio_s."""

    tokens: list
    chunk_latency_s: list
    audio_s: float
    compute_s: float

    @property
    def rtf(self) -> float:
        return self.compute_s / max(self.audio_s, 1e-9)


def zero_states(specs: dict) -> dict:
    """{name: zeros} for the sidecar's state specs {name: {"shape", "dtype"}}."""
    return {k: np.zeros(v["shape"], np.dtype(v["dtype"])) for k, v in specs.items()}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-softmax over the last axis."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


class LiteRTSteps:
    """The steps protocol of `tf_todm.decoding.beam.BeamSearch` over a streaming model's
    `predictor_step` / `joiner_step` signatures. Those take one hypothesis (batch 1), so `predict`
    and `join` call them once per hypothesis, as an app would."""

    def __init__(self, model: LiteRTModel, predictor_states: dict):
        self.model, self.specs = model, predictor_states

    def initial_state(self) -> dict:
        return zero_states(self.specs)

    def predict(self, tokens, states):
        """tokens [N], N state dicts -> (pred_proj [N, J], N state dicts)."""
        projections, new_states = [], []
        for token, state in zip(tokens, states):
            out = self.model.run("predictor_step", token=np.array([token], np.int32), **state)
            projections.append(out["pred_proj"][0])
            new_states.append({k: out[k] for k in state})
        return np.stack(projections), new_states

    def join(self, enc_proj_t, pred_proj):
        """enc_proj_t [J], pred_proj [N, J] -> float64 log-probabilities [N, V]."""
        enc = np.asarray(enc_proj_t)[None]
        logits = [self.model.run("joiner_step", enc_proj=enc, pred_proj=row[None])["logits"][0] for row in pred_proj]
        return log_softmax(np.stack(logits))


class StreamingRecognizer:
    """Streaming transducer decoding over a LiteRT model exported by `StreamingTransducer`: greedy
    (`beam_size=1`, up to `max_symbols_per_frame` tokens per frame), or modified beam search
    (`tf_todm.decoding.beam.BeamSearch`, one symbol per frame) fed frame by frame as chunks arrive,
    optionally fused with a token LM (`fusion`, a `ShallowFusion`).

    Args:
      model: `LiteRTModel` (or path). sidecar: the model's sidecar dict (`sidecar.load_sidecar`).
      max_symbols_per_frame: cap on emitted tokens per encoder frame (greedy).
      frontend: `LiteRTModel` or path of the float front end (`frontend_step(audio, pcm_cache) ->
        {features, pcm_cache}`), required when encoder_step takes "features" (bundle layout).
      beam_size: 1 = greedy; > 1 = beam width. fusion: needs beam_size > 1.
    """

    def __init__(self, model, sidecar: dict, max_symbols_per_frame: int = 5, frontend=None,
                 beam_size: int = 1, fusion=None):
        if beam_size < 1:
            raise InputError(f"StreamingRecognizer: beam_size={beam_size}, expected >= 1")
        if fusion is not None and beam_size < 2:
            raise InputError("StreamingRecognizer: LM fusion needs beam search (beam_size > 1), got beam_size=1")
        self.model = model if isinstance(model, LiteRTModel) else LiteRTModel(model)
        self.streaming = sidecar["streaming"]
        self.sample_rate_hz = int(sidecar["sample_rate_hz"])
        self.max_symbols = int(max_symbols_per_frame)
        self.beam_size, self.fusion = int(beam_size), fusion
        for name in ("encoder_step", "predictor_step", "joiner_step"):
            if name not in self.model.signature_names:
                raise ModelCheckError(f"model has no {name!r} signature (has {self.model.signature_names})")
        # features-input models (tf_todm.export.bundle) run a separate float front end first
        self.input_name = self.streaming.get("encoder_input", "audio")
        self.frontend = None
        if self.input_name != "audio":
            if frontend is None:
                raise ModelCheckError(f"encoder_step takes {self.input_name!r}: pass the front-end model "
                                      "(sidecar 'frontend_file')")
            self.frontend = frontend if isinstance(frontend, LiteRTModel) else LiteRTModel(frontend)
            if "frontend_step" not in self.frontend.signature_names:
                raise ModelCheckError(f"front-end model has no 'frontend_step' signature "
                                      f"(has {self.frontend.signature_names})")

    def _greedy_frames(self, enc, pred, pred_states, tokens):
        """Greedy search over one chunk's frames enc [T, J]: appends the emitted ids to `tokens`;
        returns the predictor output and states after them."""
        for t in range(enc.shape[0]):
            for _ in range(self.max_symbols):
                logits = self.model.run("joiner_step", enc_proj=enc[t:t + 1], pred_proj=pred["pred_proj"])["logits"]
                k = int(np.argmax(logits[0]))
                if k == BLANK_ID:
                    break
                tokens.append(k)
                pred = self.model.run("predictor_step", token=np.array([k], np.int32), **pred_states)
                pred_states = {kk: pred[kk] for kk in pred_states}
        return pred, pred_states

    def recognize(self, audio: np.ndarray) -> StreamResult:
        """audio: float32 [N] 16 kHz mono in [-1, 1] -> StreamResult."""
        info = self.streaming
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1:
            raise InputError(f"recognize: expected mono audio [N], got shape {list(audio.shape)}")
        prime, chunk = int(info["prime_samples"]), int(info["chunk_samples"])
        enc_states = zero_states(info["encoder_states"])
        pred_states = zero_states(info["predictor_states"])
        head = audio[:prime]
        pcm_cache = np.zeros([1, prime], np.float32)
        pcm_cache[0, : len(head)] = head
        if "pcm_cache" in enc_states:
            enc_states["pcm_cache"] = pcm_cache
        body = audio[prime:]
        num_chunks = max(1, -(-len(body) // chunk))
        padded = np.zeros(num_chunks * chunk, np.float32)
        padded[: len(body)] = body
        tokens, latencies = [], []
        start_all = time.perf_counter()
        search, pred = None, None
        if self.beam_size > 1:
            from tf_todm.decoding.beam import BeamSearch
            search = BeamSearch(LiteRTSteps(self.model, info["predictor_states"]), self.beam_size, self.fusion)
        else:
            pred = self.model.run("predictor_step", token=np.array([BLANK_ID], np.int32), **pred_states)
            pred_states = {k: pred[k] for k in pred_states}
        for i in range(num_chunks):
            t0 = time.perf_counter()
            x = padded[None, i * chunk:(i + 1) * chunk]
            if self.frontend is not None:
                front = self.frontend.run("frontend_step", audio=x, pcm_cache=pcm_cache)
                x, pcm_cache = front["features"], front["pcm_cache"]
            out = self.model.run("encoder_step", **{self.input_name: x}, **enc_states)
            enc_states = {k: out[k] for k in enc_states}
            enc = out["enc_proj"][0]
            if search is not None:
                for frame in enc:
                    search.advance(frame)
            else:
                pred, pred_states = self._greedy_frames(enc, pred, pred_states, tokens)
            latencies.append(time.perf_counter() - t0)
        if search is not None:
            tokens = search.best()
        compute = time.perf_counter() - start_all
        return StreamResult(tokens, latencies, len(audio) / self.sample_rate_hz, compute)


# ---------------------------------------------------------------- TFLite-Micro


class MicroModel:
    """A single-subgraph (static shapes, builtin, usually full-int8) model in TFLite-Micro.

    TFLM has no signature runner: inputs/outputs go by index in the subgraph's order.
    Args: model bytes; arena_size bytes (None: smallest that allocates, found by `min_arena_size`).
    """

    def __init__(self, model_bytes: bytes, arena_size: int | None = None):
        from tflite_micro.python.tflite_micro import runtime

        parse_model(model_bytes)
        self.model_bytes = bytes(model_bytes)
        self.arena_size = arena_size or min_arena_size(self.model_bytes)
        self.interpreter = runtime.Interpreter.from_bytes(self.model_bytes, arena_size=self.arena_size)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            d = self.interpreter.get_input_details(i)
            arr = np.asarray(x)
            if tuple(arr.shape) != tuple(d["shape"]) or arr.dtype != np.dtype(d["dtype"]):
                raise InputError(f"TFLM input {i}: expected shape {list(d['shape'])} {np.dtype(d['dtype']).name}, "
                                 f"got shape {list(arr.shape)} {arr.dtype.name}")
            self.interpreter.set_input(arr, i)
        self.interpreter.invoke()
        outs, i = [], 0
        while True:
            try:
                outs.append(np.array(self.interpreter.get_output(i)))
            except Exception:
                break
            i += 1
        return outs


# Child-process probes import this package; run them from the checkout holding it.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_fresh_python(script: str, args, timeout_s: float) -> subprocess.CompletedProcess:
    """Runs `python -c script *args` in a new interpreter that imports this checkout's package
    (cwd and PYTHONPATH), with TF's C++ logging off; stdout/stderr captured as text."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=_REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s, cwd=_REPO_ROOT)


def _zero_inputs(interpreter) -> None:
    """Sets every input of a TFLM interpreter to zeros (inputs by index until the index is out of range)."""
    i = 0
    while True:
        try:
            d = interpreter.get_input_details(i)
        except Exception:
            return
        interpreter.set_input(np.zeros(d["shape"], np.dtype(d["dtype"])), i)
        i += 1


_ARENA_PROBE = r"""
import sys
from tflite_micro.python.tflite_micro import runtime
from tf_todm.export.runtime import _zero_inputs
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
_zero_inputs(it)  # uninitialised inputs can be invalid (e.g. GATHER ids out of range)
it.invoke()
print("ARENA_OK")
"""


def min_arena_size(model_bytes: bytes, lo: int = 1024, hi: int | None = None, step: int = 1024) -> int:
    """Smallest arena (bytes, multiple of `step`) in which TFLM allocates and runs the model once.

    Each probe runs in a child Python: TFLM (tflite-micro 0.dev) segfaults instead of failing for
    some too-small arenas (seen at 16-26 KiB for a 40 KiB int8 encoder whose minimum is ~45 KiB).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tf_todm_arena_") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(bytes(model_bytes))

        def ok(size):
            proc = run_fresh_python(_ARENA_PROBE, [path, str(size)], timeout_s=300)
            return proc.returncode == 0 and "ARENA_OK" in proc.stdout

        hi = hi or max(64 * 1024, 20 * len(model_bytes))
        if not ok(hi):
            raise ModelCheckError(f"TFLM cannot allocate/run the model even with a {hi}-byte arena")
        lo = max(step, lo)
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if ok(mid):
                hi = mid
            else:
                lo = mid
    return hi


# ---------------------------------------------------------------- memory


def peak_rss_bytes() -> int:
    """VmHWM of this process (resident-set high-water mark) in bytes, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("VmHWM not found in /proc/self/status")


_MEASURE = r"""
import json, os, sys, numpy as np
from tf_todm.export.runtime import peak_rss_bytes
base = peak_rss_bytes()
from tf_todm.export.runtime import StreamingRecognizer, LiteRTModel
sidecar = json.load(open(sys.argv[2]))
audio = np.load(sys.argv[3])
after_import = peak_rss_bytes()
front = sidecar.get("frontend_file")  # bundle layout: the float front end beside the model
front = LiteRTModel(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), front), num_threads=1) if front else None
rec = StreamingRecognizer(LiteRTModel(sys.argv[1], num_threads=1), sidecar, frontend=front)
rec.recognize(audio)
print(json.dumps({"baseline_bytes": base, "after_import_bytes": after_import, "peak_bytes": peak_rss_bytes()}))
"""


def measure_in_subprocess(model_path: str, sidecar_path: str, audio: np.ndarray, tmp_dir: str) -> dict:
    """Runs one recognition in a fresh Python and returns its VmHWM numbers.

    Loads the sidecar's `frontend_file` (beside the model) when set (bundle layout).
    `model_delta_bytes` = peak - after imports: the model load (+ front end) + streaming run cost.
    """
    audio_path = os.path.join(tmp_dir, "_measure_audio.npy")
    np.save(audio_path, np.asarray(audio, np.float32))
    proc = run_fresh_python(_MEASURE, [model_path, sidecar_path, audio_path], timeout_s=600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["model_delta_bytes"] = result["peak_bytes"] - result["after_import_bytes"]
    return result
