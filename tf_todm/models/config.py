"""`TransducerConfig`: every hyperparameter of the Conformer-Transducer, written once.

A frozen dataclass with a strict JSON round trip (an unknown or mistyped key is an error). The same
config describes the supernet (uniform widths) and an extracted subnet (per-block widths in
`block_ff_dims` / `block_num_heads` / `block_conv_dims`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

from tf_todm.models.elastic_space import SearchSpace


class ConfigError(ValueError):
    """A `TransducerConfig` field has a value the model cannot be built with."""


_PREDICTOR_TYPES = ("stateless", "lstm")
CONV_NORMS = ("layer", "batch")
SUBSAMPLINGS = ("conv2d", "stack")


@dataclasses.dataclass(frozen=True)
class TransducerConfig:
    """Sizes of the Conformer-Transducer. Defaults give a ~3.8M-parameter model.

    Args:
      input_dim: feature bins F (log-mel), default 80.
      model_dim: encoder width D.
      num_blocks: Conformer blocks L.
      ff_dim: feed-forward hidden width (per macaron half).
      num_heads: attention heads H.
      head_dim: width per head; `None` means `model_dim // num_heads`. Fixed under elasticity
        (removing heads shrinks the Q/K/V width to `heads * head_dim`).
      conv_dim: convolution-module channels C (after the GLU).
      conv_kernel_size: depthwise kernel size in encoder frames.
      causal_conv: depthwise conv sees only past frames (needed for exact streaming).
      conv_norm: norm after the depthwise conv: "layer" (per-frame LayerNorm over channels) or
        "batch" (BatchNorm over valid frames, as in the Conformer paper and ESPnet; it folds into a
        per-channel multiply-add on device, and an elastic supernet needs its statistics
        re-estimated per subnet, `tf_todm.models.batch_norm_calibration`).
      subsampling: 4x front end: "conv2d" (two causal 3x3 stride-2 Conv2D) or "stack" (4 stacked
        frames -> Dense + ReLU -> linear; stateless when streaming, ~1/6 the MACs).
      subsampling_channels: channels of the two Conv2D layers ("conv2d") or the hidden width of the
        stacked-frame layer ("stack").
      subsampling_output_scale: constant factor on the subsampling output (ESPnet: sqrt(model_dim)).
      predictor_type: "stateless" (embedding + depthwise context conv) or "lstm".
      predictor_dim: predictor width P (embedding dim = output dim).
      predictor_context: tokens seen by the stateless predictor (including the current one).
      joiner_dim: joiner hidden width J.
      vocab_size: V including blank (= tokenizer vocab size).
      dropout: dropout rate of the full model (subnets may override it per step).
      chunk_size: encoder frames per attention chunk (chunked-causal attention); `None` = full.
      left_context: encoder frames of left context a chunk may attend to; `None` = unlimited.
        Only used with `chunk_size`.
      use_ctc_head: build a linear CTC head on the encoder.
      rotary_base: base of the rotary position embedding frequencies.
      block_ff_dims / block_num_heads / block_conv_dims: per-block overrides (length
        `num_blocks`), used by extracted subnets; `None` means uniform.
    """

    input_dim: int = 80
    model_dim: int = 144
    num_blocks: int = 6
    ff_dim: int = 576
    num_heads: int = 4
    head_dim: Optional[int] = None
    conv_dim: int = 144
    conv_kernel_size: int = 15
    causal_conv: bool = False
    conv_norm: str = "layer"
    subsampling: str = "conv2d"
    subsampling_channels: int = 64
    subsampling_output_scale: float = 1.0
    predictor_type: str = "stateless"
    predictor_dim: int = 256
    predictor_context: int = 2
    joiner_dim: int = 320
    vocab_size: int = 500
    dropout: float = 0.1
    chunk_size: Optional[int] = None
    left_context: Optional[int] = None
    use_ctc_head: bool = True
    rotary_base: float = 10000.0
    block_ff_dims: Optional[tuple] = None
    block_num_heads: Optional[tuple] = None
    block_conv_dims: Optional[tuple] = None

    def __post_init__(self):
        for name in ("block_ff_dims", "block_num_heads", "block_conv_dims"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(int(v) for v in value)
                object.__setattr__(self, name, value)
                if len(value) != self.num_blocks or min(value) < 1:
                    raise ConfigError(
                        f"TransducerConfig.{name}={list(value)}: expected {self.num_blocks} positive ints")
        positive = ["input_dim", "model_dim", "num_blocks", "ff_dim", "num_heads", "conv_dim",
                    "conv_kernel_size", "subsampling_channels", "predictor_dim",
                    "predictor_context", "joiner_dim", "vocab_size"]
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TransducerConfig.{name}={value!r}: expected a positive int")
        if self.head_dim is None and self.model_dim % self.num_heads:
            raise ConfigError(
                f"TransducerConfig.num_heads={self.num_heads}: must divide model_dim={self.model_dim} "
                "(or set head_dim)")
        if self.resolved_head_dim % 2:
            raise ConfigError(
                f"TransducerConfig.head_dim={self.resolved_head_dim}: rotary embedding needs an even head_dim")
        if self.conv_norm not in CONV_NORMS:
            raise ConfigError(f"TransducerConfig.conv_norm={self.conv_norm!r}: expected one of {CONV_NORMS}")
        if self.subsampling not in SUBSAMPLINGS:
            raise ConfigError(f"TransducerConfig.subsampling={self.subsampling!r}: expected one of {SUBSAMPLINGS}")
        if not float(self.subsampling_output_scale) > 0.0:
            raise ConfigError(
                f"TransducerConfig.subsampling_output_scale={self.subsampling_output_scale}: expected > 0")
        if self.predictor_type not in _PREDICTOR_TYPES:
            raise ConfigError(
                f"TransducerConfig.predictor_type={self.predictor_type!r}: expected one of {_PREDICTOR_TYPES}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"TransducerConfig.dropout={self.dropout}: expected 0 <= dropout < 1")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"TransducerConfig.chunk_size={self.chunk_size}: expected None or >= 1")
        if self.left_context is not None and self.left_context < 0:
            raise ConfigError(f"TransducerConfig.left_context={self.left_context}: expected None or >= 0")
        if self.input_dim < 7 and self.subsampling == "conv2d":
            raise ConfigError(
                f"TransducerConfig.input_dim={self.input_dim}: two 3x3 stride-2 convs need >= 7 bins")

    # --- derived sizes ---------------------------------------------------------------------
    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.model_dim // self.num_heads

    def block_dims(self, index: int) -> tuple[int, int, int]:
        """(ff_dim, num_heads, conv_dim) of block `index`."""
        ff = self.block_ff_dims[index] if self.block_ff_dims else self.ff_dim
        heads = self.block_num_heads[index] if self.block_num_heads else self.num_heads
        conv = self.block_conv_dims[index] if self.block_conv_dims else self.conv_dim
        return ff, heads, conv

    def subsampled_freq_dim(self) -> int:
        """Frequency bins after two VALID 3x3 stride-2 convolutions."""
        f = (self.input_dim - 3) // 2 + 1
        return (f - 3) // 2 + 1

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("block_ff_dims", "block_num_heads", "block_conv_dims"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TransducerConfig":
        """Strict: unknown keys raise `ConfigError`; missing keys take defaults."""
        expected = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - expected)
        if unknown:
            raise ConfigError(f"TransducerConfig: unknown keys {unknown}; expected a subset of {sorted(expected)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "TransducerConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "TransducerConfig":
        return dataclasses.replace(self, **changes)


def _fractions(value: int, fractions) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(value * f)) for f in fractions}))


def search_space(config: TransducerConfig) -> SearchSpace:
    """Default search space of a supernet config; its `largest()` is the full model.

    Depth: `max(1, L - 4) .. L`; feed-forward widths 1/3, 2/3, 1 of `ff_dim`; heads H/2, H;
    conv channels C/2, C; predictor P/2, P (only P for the LSTM predictor, whose width is not
    elastic); joiner J/2, J.
    """
    if config.block_ff_dims or config.block_num_heads or config.block_conv_dims:
        raise ConfigError("search_space: config has per-block widths (an extracted subnet), expected a supernet")
    n = config.num_blocks
    predictor = ((config.predictor_dim,) if config.predictor_type == "lstm"
                 else _fractions(config.predictor_dim, (0.5, 1.0)))
    return SearchSpace(
        num_blocks_choices=tuple(range(max(1, n - 4), n + 1)),
        ff_dim_choices=_fractions(config.ff_dim, (1 / 3, 2 / 3, 1.0)),
        num_heads_choices=_fractions(config.num_heads, (0.5, 1.0)),
        conv_dim_choices=_fractions(config.conv_dim, (0.5, 1.0)),
        predictor_dim_choices=predictor,
        joiner_dim_choices=_fractions(config.joiner_dim, (0.5, 1.0)),
    )
