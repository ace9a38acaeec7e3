"""Pareto fronts of (cost, WER) points and their plot."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np


def pareto_front(points: Sequence[Mapping[str, Any]], x_keys: Sequence[str],
                 y_key: str = "wer") -> list[Mapping[str, Any]]:
    """The points no other point dominates, all objectives minimised.

    q dominates p when q[k] <= p[k] for every k in x_keys + [y_key] and q[k] < p[k] for one.
    Points with identical objectives are kept once (the first). Points with a None objective are
    skipped.

    Args:
      points: mappings holding at least `x_keys` and `y_key`.
      x_keys: cost keys (e.g. ["params"] or ["params", "latency_ms_per_s_audio"]).
      y_key: the quality key to minimise.
    Returns:
      the non-dominated points, sorted by (x_keys..., y_key).
    """
    keys = list(x_keys) + [y_key]
    usable = [p for p in points if all(p.get(k) is not None for k in keys)]
    if not usable:
        return []
    values = np.array([[float(p[k]) for k in keys] for p in usable], np.float64)  # [N, K]
    leq = np.all(values[:, None, :] <= values[None, :, :], axis=-1)  # [q, p]: q <= p everywhere
    lt = np.any(values[:, None, :] < values[None, :, :], axis=-1)
    dominated = np.any(leq & lt, axis=0)
    front, seen = [], set()
    for i in np.flatnonzero(~dominated):
        t = tuple(values[i])
        if t not in seen:
            seen.add(t)
            front.append(usable[i])
    front.sort(key=lambda p: tuple(float(p[k]) for k in keys))
    return front


def plot_pareto(points: Sequence[Mapping[str, Any]], chosen: Mapping[str, Mapping[str, Any]],
                out_png: str, *, latency_key: str = "latency_ms_per_s_audio") -> str:
    """Scatter of WER vs params and WER vs latency (MACs/s when no latency) with Pareto fronts.

    Args:
      points: evaluated subnets as dicts with "wer", "params", "macs_per_s" and maybe latency.
      chosen: budget name -> the chosen point (highlighted and labelled).
      out_png: output file path.
    Returns:
      out_png.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_latency = any(p.get(latency_key) is not None for p in points)
    second_key = latency_key if has_latency else "macs_per_s"
    second_label = "latency (ms per s of audio)" if has_latency else "MACs per s of audio"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], second_key, second_label)):
        pts = [p for p in points if p.get(key) is not None]
        ax.scatter([p[key] for p in pts], [100 * p["wer"] for p in pts], s=10, c="0.7",
                   label="evaluated subnets")
        front = pareto_front(pts, [key])
        ax.step([p[key] for p in front], [100 * p["wer"] for p in front], where="post", c="C0",
                label="Pareto front")
        for i, (name, p) in enumerate(chosen.items()):
            if p.get(key) is None:
                continue
            ax.scatter([p[key]], [100 * p["wer"]], s=60, marker="*", c=f"C{(i + 1) % 10}", zorder=3,
                       label=f"{name}")
            ax.annotate(name, (p[key], 100 * p["wer"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("dev WER (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def best_per_bucket(points: Sequence[Mapping[str, Any]], x_key: str, bucket: float,
                    y_key: str = "wer") -> list[Mapping[str, Any]]:
    """AlphaNet's coarse front: the best `y_key` per `x_key` bucket of width `bucket`."""
    if bucket <= 0:
        raise ValueError(f"bucket width must be > 0, got {bucket}")
    best: dict[int, Mapping[str, Any]] = {}
    for p in points:
        b = int(np.floor(float(p[x_key]) / bucket))
        if b not in best or p[y_key] < best[b][y_key]:
            best[b] = p
    return [best[b] for b in sorted(best)]
