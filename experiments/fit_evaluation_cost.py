"""Fits the evaluation-cost model of the predictor search's cost cap to measured benchmark times.

`python -m experiments.fit_evaluation_cost --bench_json=A.json,B.json --cost_fit_json=fit.json`

Each benchmark side (search or random, one row of `benchmark_search` with stored evaluated subnets)
gives one point: its evaluator time in seconds against its number of evaluations n and its total
encoder blocks evaluated. Least squares without intercept, time = a * n + b * blocks, so a / b is
`predictor_search.EVALUATION_OVERHEAD_BLOCKS` (the per-subnet overhead in block units). Reported:
the coefficients, R^2, the largest relative error, and how well the model's ratio of the two sides
predicts the measured search/random evaluation-time ratio of each row.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

_BENCH_JSON = flags.DEFINE_list("bench_json", None, "benchmark_search JSON files with evaluated subnets.")
_COST_FIT_JSON = flags.DEFINE_string("cost_fit_json", None, "Result JSON path.")


def side_point(side: dict) -> tuple[float, float, float, float]:
    """(evaluations, total encoder blocks, evaluator seconds, total parameters) of one side."""
    evaluated = side["evaluated"]
    return float(len(evaluated)), float(sum(e["config"]["num_blocks"] for e in evaluated)), \
        float(side["evaluation_time_s"]), float(sum(e.get("params", 0) for e in evaluated))


def least_squares(design: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(coefficients, predictions, R^2) of the no-intercept least-squares fit of `seconds` on the
    columns of `design`."""
    coef, *_ = np.linalg.lstsq(design, seconds, rcond=None)
    predicted = design @ coef
    residual = seconds - predicted
    return coef, predicted, 1.0 - float(residual @ residual) / float(((seconds - seconds.mean()) ** 2).sum())


def fit_cost(points: np.ndarray) -> dict:
    """Least squares time = a * n + b * blocks over rows (n, blocks, seconds, params); returns the
    fit, and as "r2_params_instead" the R^2 of time = a * n + c * params (does width matter?)."""
    seconds = points[:, 2]
    (a, b), predicted, r2 = least_squares(points[:, :2], seconds)
    return {"seconds_per_evaluation": float(a), "seconds_per_block": float(b),
            "overhead_blocks": float(a / b), "r2": r2,
            "max_relative_error": float(np.max(np.abs(predicted - seconds) / seconds)), "points": len(points),
            "r2_params_instead": least_squares(points[:, [0, 3]], seconds)[2]}


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 1
    if not _BENCH_JSON.value or not _COST_FIT_JSON.value:
        print("error: --bench_json and --cost_fit_json are required", file=sys.stderr)
        return 1
    rows = []
    for path in _BENCH_JSON.value:
        with open(path) as f:
            data = json.load(f)
        for r in data["rows"]:
            if "evaluated" not in r["search"] or "evaluated" not in r["random"]:
                print(f"error: {path}: row {r['budget']}/{r['seed']} stores no evaluated subnets "
                      "(benchmark_search before session 18)", file=sys.stderr)
                return 1
            rows.append((path, r["budget"], r["seed"], side_point(r["search"]), side_point(r["random"])))
    fit = fit_cost(np.array([p for row in rows for p in row[3:]]))
    per_row = []
    for path, budget, seed, s, q in rows:
        model_ratio = (s[0] * fit["overhead_blocks"] + s[1]) / (q[0] * fit["overhead_blocks"] + q[1])
        per_row.append({"file": path, "budget": budget, "seed": seed, "measured_ratio": s[2] / q[2],
                        "model_ratio": model_ratio})
    errors = [abs(r["model_ratio"] - r["measured_ratio"]) for r in per_row]
    result = {"fit": fit, "rows": per_row, "max_ratio_error": max(errors), "mean_ratio_error": float(np.mean(errors))}
    with open(_COST_FIT_JSON.value, "w") as f:
        json.dump(result, f, indent=1)
    print(f"time = {fit['seconds_per_evaluation']:.3f} s * evaluations + {fit['seconds_per_block']:.3f} s * blocks "
          f"(overhead {fit['overhead_blocks']:.2f} blocks), R^2 {fit['r2']:.3f}, largest error "
          f"{100 * fit['max_relative_error']:.0f}%; time ratio error max {result['max_ratio_error']:.3f}, "
          f"mean {result['mean_ratio_error']:.3f}")
    return 0


if __name__ == "__main__":
    app.run(main)
