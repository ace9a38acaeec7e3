"""Subnet configurations and the search space of the elastic supernet.

`SubnetConfig` is the currency between supernet training, search and export: a frozen,
JSON-serialisable description of one subnet. `SearchSpace` lists the discrete choices per elastic
dimension and samples, mutates and crosses configs; every config it returns is valid.

Elastic dimensions (all prefixes of the supernet's importance-ordered weights):
  * encoder depth: the first `num_blocks` Conformer blocks run;
  * per block: feed-forward hidden width, number of attention heads, convolution-module width;
  * predictor width and joiner width (shared by the whole subnet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class SubnetConfig:
    """One subnet of the supernet.

    Args:
      num_blocks: encoder blocks that run (a prefix of the supernet's blocks).
      ff_dims: feed-forward hidden width per running block, length `num_blocks`.
      num_heads: attention heads per running block, length `num_blocks`.
      conv_dims: convolution-module channels per running block, length `num_blocks`.
      predictor_dim: predictor width (embedding / LSTM units).
      joiner_dim: joiner hidden width.
    """

    num_blocks: int
    ff_dims: tuple[int, ...]
    num_heads: tuple[int, ...]
    conv_dims: tuple[int, ...]
    predictor_dim: int
    joiner_dim: int

    def __post_init__(self):
        for name in ("ff_dims", "num_heads", "conv_dims"):
            value = tuple(int(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != self.num_blocks:
                raise ValueError(
                    f"SubnetConfig.{name} has {len(value)} entries, expected num_blocks={self.num_blocks}"
                )
        object.__setattr__(self, "num_blocks", int(self.num_blocks))
        object.__setattr__(self, "predictor_dim", int(self.predictor_dim))
        object.__setattr__(self, "joiner_dim", int(self.joiner_dim))
        if self.num_blocks < 1:
            raise ValueError(f"SubnetConfig.num_blocks must be >= 1, got {self.num_blocks}")

    def to_dict(self) -> dict:
        return {
            "num_blocks": self.num_blocks,
            "ff_dims": list(self.ff_dims),
            "num_heads": list(self.num_heads),
            "conv_dims": list(self.conv_dims),
            "predictor_dim": self.predictor_dim,
            "joiner_dim": self.joiner_dim,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "SubnetConfig":
        expected = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - expected
        missing = expected - set(d)
        if unknown or missing:
            raise ValueError(
                f"SubnetConfig: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
            )
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    @classmethod
    def from_json(cls, text: str) -> "SubnetConfig":
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """Short stable hash, used to cache measurements per config."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]


def _choose(rng: np.random.Generator, choices: Sequence[int]) -> int:
    return int(choices[int(rng.integers(len(choices)))])


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Discrete choices per elastic dimension; each tuple sorted ascending.

    The largest choice of each dimension must equal the supernet's size in that dimension.
    """

    num_blocks_choices: tuple[int, ...]
    ff_dim_choices: tuple[int, ...]
    num_heads_choices: tuple[int, ...]
    conv_dim_choices: tuple[int, ...]
    predictor_dim_choices: tuple[int, ...]
    joiner_dim_choices: tuple[int, ...]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = tuple(sorted({int(v) for v in getattr(self, f.name)}))
            if not value or value[0] < 1:
                raise ValueError(f"SearchSpace.{f.name} needs positive choices, got {value}")
            object.__setattr__(self, f.name, value)

    # --- canonical members -------------------------------------------------------------------
    def largest(self) -> SubnetConfig:
        n = self.num_blocks_choices[-1]
        return SubnetConfig(
            n, (self.ff_dim_choices[-1],) * n, (self.num_heads_choices[-1],) * n,
            (self.conv_dim_choices[-1],) * n, self.predictor_dim_choices[-1],
            self.joiner_dim_choices[-1],
        )

    def smallest(self) -> SubnetConfig:
        n = self.num_blocks_choices[0]
        return SubnetConfig(
            n, (self.ff_dim_choices[0],) * n, (self.num_heads_choices[0],) * n,
            (self.conv_dim_choices[0],) * n, self.predictor_dim_choices[0],
            self.joiner_dim_choices[0],
        )

    def sample(self, rng: np.random.Generator, depth: Optional[int] = None) -> SubnetConfig:
        """A uniformly random config (each dimension drawn independently); `depth` fixes
        `num_blocks` (one of `num_blocks_choices`) and draws only the widths."""
        if depth is not None and depth not in self.num_blocks_choices:
            raise ValueError(f"SearchSpace.sample: depth {depth} not in choices {list(self.num_blocks_choices)}")
        n = _choose(rng, self.num_blocks_choices) if depth is None else int(depth)
        return SubnetConfig(
            n,
            tuple(_choose(rng, self.ff_dim_choices) for _ in range(n)),
            tuple(_choose(rng, self.num_heads_choices) for _ in range(n)),
            tuple(_choose(rng, self.conv_dim_choices) for _ in range(n)),
            _choose(rng, self.predictor_dim_choices),
            _choose(rng, self.joiner_dim_choices),
        )

    # --- validity ----------------------------------------------------------------------------
    def validate(self, config: SubnetConfig) -> None:
        """Raises ValueError naming the field when `config` is not in this space."""
        checks = [("num_blocks", [config.num_blocks], self.num_blocks_choices),
                  ("ff_dims", config.ff_dims, self.ff_dim_choices),
                  ("num_heads", config.num_heads, self.num_heads_choices),
                  ("conv_dims", config.conv_dims, self.conv_dim_choices),
                  ("predictor_dim", [config.predictor_dim], self.predictor_dim_choices),
                  ("joiner_dim", [config.joiner_dim], self.joiner_dim_choices)]
        for name, values, choices in checks:
            bad = [v for v in values if v not in choices]
            if bad:
                raise ValueError(f"SubnetConfig.{name}={list(values)}: {bad} not in choices {list(choices)}")

    def contains(self, config: SubnetConfig) -> bool:
        try:
            self.validate(config)
        except ValueError:
            return False
        return True

    # --- evolution operators -----------------------------------------------------------------
    def mutate(self, config: SubnetConfig, rng: np.random.Generator, prob: float = 0.2) -> SubnetConfig:
        """Re-draws each gene with probability `prob`; depth changes grow/shrink the block list."""
        n = config.num_blocks
        if rng.random() < prob:
            n = _choose(rng, self.num_blocks_choices)

        def per_block(values, choices):
            out = []
            for i in range(n):
                if i >= len(values) or rng.random() < prob:
                    out.append(_choose(rng, choices))
                else:
                    out.append(values[i])
            return tuple(out)

        return SubnetConfig(
            n,
            per_block(config.ff_dims, self.ff_dim_choices),
            per_block(config.num_heads, self.num_heads_choices),
            per_block(config.conv_dims, self.conv_dim_choices),
            _choose(rng, self.predictor_dim_choices) if rng.random() < prob else config.predictor_dim,
            _choose(rng, self.joiner_dim_choices) if rng.random() < prob else config.joiner_dim,
        )

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: np.random.Generator) -> SubnetConfig:
        """Uniform crossover: each gene from either parent; block genes past a parent's depth
        come from the other parent."""
        n = a.num_blocks if rng.random() < 0.5 else b.num_blocks

        def per_block(va, vb):
            out = []
            for i in range(n):
                options = [v[i] for v in (va, vb) if i < len(v)]
                out.append(options[int(rng.integers(len(options)))])
            return tuple(out)

        return SubnetConfig(
            n,
            per_block(a.ff_dims, b.ff_dims),
            per_block(a.num_heads, b.num_heads),
            per_block(a.conv_dims, b.conv_dims),
            a.predictor_dim if rng.random() < 0.5 else b.predictor_dim,
            a.joiner_dim if rng.random() < 0.5 else b.joiner_dim,
        )

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        expected = {f.name for f in dataclasses.fields(cls)}
        if set(d) != expected:
            raise ValueError(
                f"SearchSpace: unknown keys {sorted(set(d) - expected)}, missing {sorted(expected - set(d))}"
            )
        return cls(**{k: tuple(v) for k, v in d.items()})
