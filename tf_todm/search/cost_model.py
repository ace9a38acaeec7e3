"""Costs of a subnet: parameters, MACs per second of audio, int8 model size, latency.

The search only needs a callable `CostModel: SubnetConfig -> Costs`. `AnalyticCostModel` builds one
from an exact parameter count (injected `params_fn`), the MAC count of the Conformer-Transducer
(`macs_per_second`), a linear int8-size model, and an optional latency estimator: either
`MeasuredLatency` (a JSON cache around an injected `measure_fn(subnet) -> ms per s of audio`, e.g.
TFLite conversion + LiteRT timing) or `FittedLatencyModel` (latency ≈ a·MACs + b·params + c, fitted
by least squares on measured samples, with its mean absolute % error).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from tf_todm.models.elastic_space import SubnetConfig

FEATURE_FRAMES_PER_S = 100.0
"""Log-mel frames per second of audio (10 ms hop)."""

SUBSAMPLING_FACTOR = 4
"""Time subsampling of the convolutional front end: 100 feature frames/s -> 25 encoder frames/s."""


@dataclasses.dataclass(frozen=True)
class Costs:
    """Resource costs of one subnet.

    Args:
      params: parameter count of the extracted subnet.
      macs_per_s: multiply-accumulates per second of input audio (streaming / greedy decoding).
      int8_bytes: estimated (or measured) size of the full-int8 `.tflite` in bytes.
      latency_ms_per_s_audio: compute time per second of audio in ms, None when not estimated.
    """

    params: int
    macs_per_s: float
    int8_bytes: int
    latency_ms_per_s_audio: Optional[float] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class CostModel(Protocol):
    """Anything that maps a subnet config to its `Costs`."""

    def __call__(self, subnet: SubnetConfig) -> Costs: ...


class LatencyEstimator(Protocol):
    """Gives latency (ms per second of audio) for a subnet whose MACs and params are known."""

    def latency_ms_per_s_audio(self, subnet: SubnetConfig, macs_per_s: float, params: int) -> float: ...


MeasureFn = Callable[[SubnetConfig], float]
"""`measure_fn(subnet_config) -> latency_ms_per_s_audio` (e.g. export + LiteRT timing)."""


# --- MACs ------------------------------------------------------------------------------------------
def _attention_context(model_config: Any, utterance_s: float) -> float:
    """Mean keys per query, in encoder frames, for `tf_todm.models.attention.chunk_mask`:
    left_context + chunk_size when streaming with a bounded left context; with unbounded left
    context (or full attention) the mean over an utterance of `utterance_s` seconds."""
    frames = utterance_s * FEATURE_FRAMES_PER_S / SUBSAMPLING_FACTOR
    chunk = getattr(model_config, "chunk_size", None)
    left = getattr(model_config, "left_context", None)
    if chunk is None:
        return frames
    if left is None:  # query in chunk q sees (q + 1)·chunk keys
        return min(frames, frames / 2 + chunk / 2)
    return float(min(chunk + left, frames))


def macs_breakdown(model_config: Any, subnet: SubnetConfig, *, utterance_s: float = 10.0,
                   tokens_per_s: float = 4.0) -> dict[str, float]:
    """MACs per second of audio per component of the Conformer-Transducer run with `subnet`.

    Counted (matrix products and convolutions; norms, activations, softmax, rotary ignored):
      * front end (not elastic): Conv2D 3x3/2 (1 -> C) at 50 frames/s over (F-3)//2+1 bins,
        Conv2D 3x3/2 (C -> C) at 25 frames/s over F'' bins, Linear(C·F'' -> D); C =
        `subsampling_channels`; with subsampling="stack": Linear(4F -> C) and Linear(C -> D) at
        25 frames/s.
      * per running encoder block at 25 frames/s: two macaron FFNs (D -> ff -> D); MHSA with
        h heads of width `head_dim` (Q, K, V, output projections, plus 2·h·head_dim·L for scores
        and weighted sum over L keys, see `_attention_context`); conv module (pointwise
        D -> 2c, GLU, depthwise kernel k on c channels, pointwise c -> D).
      * predictor per emitted token (`tokens_per_s`): LSTM 8·P², stateless context·P.
      * joiner: encoder projection D·J per frame, predictor projection P·J per token, output J·V
        per joiner evaluation (greedy decoding: one per frame plus one per emitted token).

    Args:
      model_config: the supernet's `TransducerConfig`.
      subnet: the subnet config.
      utterance_s: utterance length assumed when attention context is unbounded.
      tokens_per_s: emitted tokens per second of audio.
    Returns:
      {"frontend", "encoder", "predictor", "joiner"} -> MACs per second of audio.
    """
    d = int(model_config.model_dim)
    f_in = int(model_config.input_dim)
    head_dim = int(getattr(model_config, "resolved_head_dim", None) or d // int(model_config.num_heads))
    k = int(model_config.conv_kernel_size)
    enc_rate = FEATURE_FRAMES_PER_S / SUBSAMPLING_FACTOR
    c = int(getattr(model_config, "subsampling_channels", None) or d)
    f1 = (f_in - 3) // 2 + 1
    f2 = (f1 - 3) // 2 + 1
    frontend = (FEATURE_FRAMES_PER_S / 2) * f1 * 9 * c + enc_rate * f2 * 9 * c * c + enc_rate * c * f2 * d
    if getattr(model_config, "subsampling", "conv2d") == "stack":
        frontend = enc_rate * (4 * f_in * c + c * d)

    context = _attention_context(model_config, utterance_s)
    per_frame = 0.0
    for ff, h, conv in zip(subnet.ff_dims, subnet.num_heads, subnet.conv_dims):
        inner = h * head_dim
        per_frame += 4 * d * ff                          # two macaron FFNs
        per_frame += 4 * d * inner + 2 * inner * context  # projections + scores + weighted sum
        per_frame += 3 * d * conv + conv * k              # pointwise(2c), depthwise, pointwise
    encoder = enc_rate * per_frame

    p, j, v = subnet.predictor_dim, subnet.joiner_dim, int(model_config.vocab_size)
    if model_config.predictor_type == "lstm":
        predictor = tokens_per_s * 8 * p * p
    else:
        predictor = tokens_per_s * int(getattr(model_config, "predictor_context", 2)) * p
    joiner = enc_rate * d * j + tokens_per_s * p * j + (enc_rate + tokens_per_s) * j * v
    return {"frontend": float(frontend), "encoder": float(encoder),
            "predictor": float(predictor), "joiner": float(joiner)}


def macs_per_second(model_config: Any, subnet: SubnetConfig, **kwargs) -> float:
    """Total MACs per second of audio; see `macs_breakdown` for what is counted."""
    return float(sum(macs_breakdown(model_config, subnet, **kwargs).values()))


# --- int8 size -------------------------------------------------------------------------------------
def fit_int8_size(params: Sequence[float], int8_bytes: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit int8_bytes ≈ bytes_per_param·params + overhead_bytes; returns both."""
    x = np.asarray(params, np.float64)
    y = np.asarray(int8_bytes, np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"fit_int8_size needs >= 2 paired samples, got {x.size} and {y.size}")
    a = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(slope), float(intercept)


# --- latency ---------------------------------------------------------------------------------------
def _atomic_write_json(path: str, data: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class MeasuredLatency:
    """Measured latency per subnet, cached on disk as JSON keyed by `SubnetConfig.key()`.

    File format: {"entries": {key: {"config": SubnetConfig dict, "latency_ms_per_s_audio": x}}}.

    Args:
      path: JSON cache file (created on first measurement; read if it exists).
      measure_fn: `measure_fn(subnet) -> ms per s of audio`; None makes the cache read-only.
    """

    def __init__(self, path: str, measure_fn: Optional[MeasureFn] = None):
        self.path = os.fspath(path)
        self.measure_fn = measure_fn
        self._entries: dict[str, dict] = {}
        if os.path.exists(self.path):
            try:
                with open(self.path, "r", encoding="utf-8") as f:
                    data = json.load(f)
                entries = data["entries"]
                for key, entry in entries.items():
                    SubnetConfig.from_dict(entry["config"])
                    float(entry["latency_ms_per_s_audio"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{self.path}: not a latency cache ({type(e).__name__}: {e})") from None
            self._entries = dict(entries)
        self.num_measured = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, subnet: SubnetConfig) -> bool:
        return subnet.key() in self._entries

    def __call__(self, subnet: SubnetConfig) -> float:
        key = subnet.key()
        if key not in self._entries:
            if self.measure_fn is None:
                raise KeyError(f"{self.path}: no latency measured for subnet {key} and no measure_fn")
            value = float(self.measure_fn(subnet))
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"measure_fn returned invalid latency {value!r} for subnet {key}")
            self._entries[key] = {"config": subnet.to_dict(), "latency_ms_per_s_audio": value}
            self.num_measured += 1
            _atomic_write_json(self.path, {"entries": self._entries})
        return float(self._entries[key]["latency_ms_per_s_audio"])

    def latency_ms_per_s_audio(self, subnet: SubnetConfig, macs_per_s: float, params: int) -> float:
        del macs_per_s, params
        return self(subnet)

    def samples(self) -> list[tuple[SubnetConfig, float]]:
        """All cached (subnet, latency) pairs in key order."""
        return [(SubnetConfig.from_dict(e["config"]), float(e["latency_ms_per_s_audio"]))
                for _, e in sorted(self._entries.items())]


@dataclasses.dataclass(frozen=True)
class FittedLatencyModel:
    """latency_ms_per_s_audio ≈ macs_coef·macs_per_s + params_coef·params + intercept.

    `mean_abs_pct_error` is the mean of |pred - measured| / measured · 100 over the fit samples.
    """

    macs_coef: float
    params_coef: float
    intercept: float
    mean_abs_pct_error: float
    num_samples: int

    @classmethod
    def fit(cls, macs_per_s: Sequence[float], params: Sequence[float],
            latencies: Sequence[float]) -> "FittedLatencyModel":
        """Least-squares fit on measured samples (>= 3, latencies > 0)."""
        m = np.asarray(macs_per_s, np.float64)
        p = np.asarray(params, np.float64)
        y = np.asarray(latencies, np.float64)
        if not (m.shape == p.shape == y.shape) or m.ndim != 1:
            raise ValueError(f"FittedLatencyModel.fit: mismatched sample shapes {m.shape}, {p.shape}, {y.shape}")
        if m.size < 3:
            raise ValueError(f"FittedLatencyModel.fit needs >= 3 measured samples, got {m.size}")
        if np.any(y <= 0):
            raise ValueError("FittedLatencyModel.fit: latencies must be > 0")
        # Columns scaled to unit max so lstsq is well conditioned (MACs ~1e8, params ~1e6).
        sm, sp = max(np.abs(m).max(), 1.0), max(np.abs(p).max(), 1.0)
        a = np.stack([m / sm, p / sp, np.ones_like(m)], axis=1)
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        model = cls(float(coef[0] / sm), float(coef[1] / sp), float(coef[2]), 0.0, int(m.size))
        pred = np.array([model.predict(mi, pi) for mi, pi in zip(m, p)])
        mape = float(np.mean(np.abs(pred - y) / y) * 100.0)
        return dataclasses.replace(model, mean_abs_pct_error=mape)

    @classmethod
    def fit_measured(cls, measured: MeasuredLatency, costs_fn: CostModel) -> "FittedLatencyModel":
        """Fits on every sample of a `MeasuredLatency` cache; MACs and params from `costs_fn`."""
        samples = measured.samples()
        costs = [costs_fn(s) for s, _ in samples]
        return cls.fit([c.macs_per_s for c in costs], [c.params for c in costs], [y for _, y in samples])

    @staticmethod
    def leave_one_out_error(macs_per_s: Sequence[float], params: Sequence[float],
                            latencies: Sequence[float]) -> float:
        """Mean absolute % error of each sample predicted by a fit on the others (>= 4 samples):
        the honest error to expect on subnets that were not measured."""
        m, p, y = (np.asarray(a, np.float64) for a in (macs_per_s, params, latencies))
        if m.size < 4:
            raise ValueError(f"leave_one_out_error needs >= 4 samples, got {m.size}")
        errors = []
        for i in range(m.size):
            keep = np.arange(m.size) != i
            fit = FittedLatencyModel.fit(m[keep], p[keep], y[keep])
            errors.append(abs(fit.predict(m[i], p[i]) - y[i]) / y[i])
        return float(np.mean(errors) * 100.0)

    def predict(self, macs_per_s: float, params: float) -> float:
        return float(self.macs_coef * macs_per_s + self.params_coef * params + self.intercept)

    def latency_ms_per_s_audio(self, subnet: SubnetConfig, macs_per_s: float, params: int) -> float:
        del subnet
        return self.predict(macs_per_s, params)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FittedLatencyModel":
        return cls(**d)


# --- the analytic cost model -----------------------------------------------------------------------
def _default_params_fn(model_config: Any) -> Callable[[SubnetConfig], int]:
    try:
        from tf_todm.models.param_count import count_params
    except ImportError as e:
        raise ImportError(
            "AnalyticCostModel needs tf_todm.models.param_count.count_params or an explicit "
            f"params_fn ({e})") from None
    return lambda subnet: int(count_params(model_config, subnet))


class AnalyticCostModel:
    """`Costs` of a subnet from the model config, computed analytically (cached by config key).

    Args:
      model_config: the supernet's `TransducerConfig`.
      params_fn: `params_fn(subnet) -> int`; default `count_params(model_config, subnet)`.
      latency: a `LatencyEstimator` (`MeasuredLatency`, `FittedLatencyModel`) or None.
      int8_bytes_per_param: slope of the int8 size model (1 byte per int8 weight).
      int8_overhead_bytes: flatbuffer, scales, biases and metadata; fit with `fit_int8_size` on
        real exports to replace the declared default.
      **macs_kwargs: forwarded to `macs_per_second` (utterance_s, tokens_per_s).
    """

    def __init__(self, model_config: Any, params_fn: Optional[Callable[[SubnetConfig], int]] = None,
                 latency: Optional[LatencyEstimator] = None, int8_bytes_per_param: float = 1.0,
                 int8_overhead_bytes: float = 32768.0, **macs_kwargs):
        self.model_config = model_config
        self.params_fn = params_fn or _default_params_fn(model_config)
        self.latency = latency
        self.int8_bytes_per_param = float(int8_bytes_per_param)
        self.int8_overhead_bytes = float(int8_overhead_bytes)
        self.macs_kwargs = macs_kwargs
        self._cache: dict[str, Costs] = {}

    def __call__(self, subnet: SubnetConfig) -> Costs:
        key = subnet.key()
        if key not in self._cache:
            params = int(self.params_fn(subnet))
            macs = macs_per_second(self.model_config, subnet, **self.macs_kwargs)
            size = int(round(self.int8_bytes_per_param * params + self.int8_overhead_bytes))
            latency = (None if self.latency is None
                       else float(self.latency.latency_ms_per_s_audio(subnet, macs, params)))
            self._cache[key] = Costs(params, macs, size, latency)
        return self._cache[key]
