"""A WER predictor fitted to whole-dev evaluations (the accuracy predictor of Once-for-All), used to
rank a budget's feasible subnets without evaluating them.

Features (`subnet_features`, one row per subnet): an intercept; one indicator per depth choice above
the smallest; for each per-block dimension (feed-forward width, heads, conv channels) and each of its
choices above the smallest, the number of running blocks with that choice (or, with `per_position`,
one indicator per block position: block i runs with that choice); one indicator per predictor /
joiner choice above the smallest. The model is ridge regression on these features with an
unpenalised intercept (`fit_ridge`).

Why linear in counts: inside one budget of the demo supernet a few genes carry most of the WER
differences (the joiner width most); counts instead of per-position indicators keep the columns
few (11 for the demo space, against 31) for fits to 16-34 evaluations. In the search benchmark
(`experiments.benchmark_search --predictor_initial=16`, WORKSPACE.md) the predictor fitted to a run's
other 33 evaluations ranks the 34th with rank correlation 0.64-0.93 against its whole-dev WER.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig

_PER_BLOCK = (("ff_dims", "ff_dim_choices"), ("num_heads", "num_heads_choices"),
              ("conv_dims", "conv_dim_choices"))
_GLOBAL = (("predictor_dim", "predictor_dim_choices"), ("joiner_dim", "joiner_dim_choices"))


def feature_names(space: SearchSpace, per_position: bool = False) -> list[str]:
    """Names of `subnet_features` columns, in order."""
    names = ["intercept"] + [f"num_blocks={n}" for n in space.num_blocks_choices[1:]]
    for gene, choices in _PER_BLOCK:
        if per_position:
            names += [f"block {i} {gene}={v}" for i in range(max(space.num_blocks_choices))
                      for v in getattr(space, choices)[1:]]
        else:
            names += [f"blocks with {gene}={v}" for v in getattr(space, choices)[1:]]
    for gene, choices in _GLOBAL:
        names += [f"{gene}={v}" for v in getattr(space, choices)[1:]]
    return names


def subnet_features(config: SubnetConfig, space: SearchSpace, per_position: bool = False) -> np.ndarray:
    """[F] float64 feature row of `config` (columns named by `feature_names(space, per_position)`)."""
    row = [1.0] + [float(config.num_blocks == n) for n in space.num_blocks_choices[1:]]
    for gene, choices in _PER_BLOCK:
        values = getattr(config, gene)
        if per_position:
            row += [float(i < len(values) and values[i] == choice) for i in range(max(space.num_blocks_choices))
                    for choice in getattr(space, choices)[1:]]
        else:
            row += [float(sum(v == choice for v in values)) for choice in getattr(space, choices)[1:]]
    for gene, choices in _GLOBAL:
        row += [float(getattr(config, gene) == choice) for choice in getattr(space, choices)[1:]]
    return np.asarray(row, dtype=np.float64)


def fit_ridge(features: np.ndarray, targets: np.ndarray, l2: float) -> np.ndarray:
    """Weights [F] minimising |X w - y|^2 + l2 * |w[1:]|^2 (column 0, the intercept, unpenalised).

    Args:
      features: [N, F] design matrix whose first column is the intercept.
      targets: [N].
      l2: ridge strength (> 0 keeps the solve well-posed when N < F or columns are collinear).
    """
    features = np.asarray(features, np.float64)
    targets = np.asarray(targets, np.float64)
    if features.ndim != 2 or targets.shape != features.shape[:1]:
        raise ValueError(f"fit_ridge: features [N, F] and targets [N], got {features.shape} and {targets.shape}")
    penalty = np.eye(features.shape[1]) * float(l2)
    penalty[0, 0] = 0.0
    return np.linalg.solve(features.T @ features + penalty, features.T @ targets)


def rank_correlation(a, b) -> float:
    """Spearman's rho of two equal-length sequences (ties ranked by position)."""
    ra, rb = np.argsort(np.argsort(a, kind="stable")), np.argsort(np.argsort(b, kind="stable"))
    return float(np.corrcoef(ra, rb)[0, 1])


class WerPredictor:
    """Ridge regression of WER on `subnet_features` over one search space."""

    def __init__(self, space: SearchSpace, l2: float = 1.0, per_position: bool = False):
        if l2 <= 0:
            raise ValueError(f"WerPredictor: l2 must be > 0, got {l2}")
        self.space, self.l2, self.per_position = space, float(l2), bool(per_position)
        self.weights: np.ndarray | None = None

    def features(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        return np.stack([subnet_features(c, self.space, self.per_position) for c in configs])

    def fit(self, configs: Sequence[SubnetConfig], wers: Sequence[float]) -> "WerPredictor":
        if len(configs) < 2:
            raise ValueError(f"WerPredictor.fit needs >= 2 evaluated subnets, got {len(configs)}")
        self.weights = fit_ridge(self.features(configs), np.asarray(wers, np.float64), self.l2)
        return self

    def predict(self, configs: Sequence[SubnetConfig]) -> np.ndarray:
        """[len(configs)] predicted WERs."""
        if self.weights is None:
            raise ValueError("WerPredictor.predict before fit")
        return self.features(configs) @ self.weights

    def leave_one_out(self, configs: Sequence[SubnetConfig], wers: Sequence[float]) -> np.ndarray:
        """[N] prediction of each subnet by a predictor fitted to the other N - 1."""
        x, y = self.features(configs), np.asarray(wers, np.float64)
        keep = ~np.eye(len(y), dtype=bool)
        return np.array([x[i] @ fit_ridge(x[keep[i]], y[keep[i]], self.l2) for i in range(len(y))])
