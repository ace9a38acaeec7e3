"""A documented synthetic WER surface for testing and benchmarking the search without a supernet.

    quality(c) = Σ_i decay^i · (w_ff·log2(ff_i/ff_min) + w_h·log2(h_i/h_min) + w_c·log2(c_i/c_min))
                 + w_p·log2(P/P_min) + w_j·log2(J/J_min)
    WER(c)     = floor + span · exp(-3 · quality(c) / quality(largest)) + noise(c)

Every gene helps (more width/depth -> lower WER) with diminishing returns, later blocks help less
(decay < 1), and dimensions differ in value per parameter, so the best subnet under a parameter
budget is a real trade-off with (generically) a unique optimum. `noise(c)` is an optional
deterministic per-config perturbation (a pure function of the config key and seed), mimicking the
evaluation noise of a supernet's dev WER.
"""

from __future__ import annotations

import math
import time

import numpy as np

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig


def toy_model_config(**overrides) -> TransducerConfig:
    """A small streaming supernet config (~0.6M parameters) for toy searches and benchmarks."""
    base = dict(input_dim=80, model_dim=64, num_blocks=6, ff_dim=256, num_heads=4, conv_dim=64,
                conv_kernel_size=15, subsampling_channels=32, predictor_type="stateless",
                predictor_dim=64, joiner_dim=64, vocab_size=128, chunk_size=8, left_context=32)
    base.update(overrides)
    return TransducerConfig(**base)


def toy_space() -> SearchSpace:
    """The benchmark's toy space (~10^12 subnets); its largest member is `toy_model_config()`."""
    return SearchSpace(num_blocks_choices=(2, 3, 4, 5, 6), ff_dim_choices=(32, 64, 96, 128, 192, 256),
                       num_heads_choices=(1, 2, 4), conv_dim_choices=(16, 32, 48, 64),
                       predictor_dim_choices=(16, 32, 64), joiner_dim_choices=(16, 32, 64))


class ToyWerEvaluator:
    """Synthetic dev WER of a subnet (see the module docstring for the formula).

    Args:
      space: the search space (its smallest/largest choices normalise the surface).
      floor, span: WER of the largest subnet is ≈ floor + span·e^-3, of the smallest floor + span.
      decay: weight ratio between consecutive blocks.
      weights: (w_ff, w_h, w_c, w_p, w_j).
      noise_std: std of the deterministic per-config noise (0 = exact surface).
      seed: seed of the noise.
      eval_seconds: sleep per call, to emulate a real evaluation's cost in timing benchmarks.
    """

    def __init__(self, space: SearchSpace, *, floor: float = 0.08, span: float = 0.9,
                 decay: float = 0.8, weights: tuple = (1.0, 0.55, 0.7, 0.35, 0.25),
                 noise_std: float = 0.0, seed: int = 0, eval_seconds: float = 0.0):
        self.space = space
        self.floor, self.span, self.decay = floor, span, decay
        self.weights = tuple(float(w) for w in weights)
        self.noise_std, self.seed, self.eval_seconds = noise_std, seed, eval_seconds
        self.num_calls = 0
        self._scale = self.quality(space.largest())

    def quality(self, c: SubnetConfig) -> float:
        s = self.space
        w_ff, w_h, w_c, w_p, w_j = self.weights
        q = 0.0
        for i, (ff, h, conv) in enumerate(zip(c.ff_dims, c.num_heads, c.conv_dims)):
            q += self.decay ** i * (w_ff * math.log2(ff / s.ff_dim_choices[0])
                                    + w_h * math.log2(h / s.num_heads_choices[0])
                                    + w_c * math.log2(conv / s.conv_dim_choices[0]))
        # A block of the smallest widths still adds depth.
        q += sum(0.3 * self.decay ** i for i in range(s.num_blocks_choices[0], c.num_blocks))
        q += w_p * math.log2(c.predictor_dim / s.predictor_dim_choices[0])
        q += w_j * math.log2(c.joiner_dim / s.joiner_dim_choices[0])
        return q

    def wer(self, c: SubnetConfig) -> float:
        """The surface itself (no sleep, no call count)."""
        value = self.floor + self.span * math.exp(-3.0 * self.quality(c) / max(self._scale, 1e-12))
        if self.noise_std > 0:
            rng = np.random.default_rng([int(c.key(), 16), self.seed])
            value += self.noise_std * float(rng.standard_normal())
        return float(value)

    def evaluate(self, subnet: SubnetConfig) -> float:
        self.num_calls += 1
        if self.eval_seconds > 0:
            time.sleep(self.eval_seconds)
        return self.wer(subnet)
