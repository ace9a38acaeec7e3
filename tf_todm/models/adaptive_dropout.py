"""Adaptive dropout: larger subnets get more dropout (TODM's formula is unpublished; ours is linear)."""

from __future__ import annotations


def adaptive_dropout_rate(subnet_params: int, max_params: int, min_params: int, max_rate: float,
                          min_rate: float) -> float:
    """Dropout rate linear in parameter count.

    rate = min_rate + (max_rate - min_rate) * (subnet_params - min_params) / (max_params - min_params),
    clipped to [min(min_rate, max_rate), max(...)]. The largest subnet gets `max_rate`, the smallest
    `min_rate`; when max_params == min_params the rate is `max_rate`.
    """
    if max_params < min_params:
        raise ValueError(f"adaptive_dropout_rate: max_params={max_params} < min_params={min_params}")
    if max_params == min_params:
        return float(max_rate)
    fraction = (subnet_params - min_params) / (max_params - min_params)
    rate = min_rate + (max_rate - min_rate) * fraction
    low, high = min(min_rate, max_rate), max(min_rate, max_rate)
    return float(min(max(rate, low), high))
