"""Evolutionary search vs random sampling, side by side, per budget.

  python -m experiments.benchmark_search --evaluator=toy --out=artifacts/bench/search.json
  python -m experiments.benchmark_search --evaluator=supernet --checkpoint=RUN \
      --dev_manifest=data/default/dev.jsonl --budgets=budgets.json --out=...

For each budget and seed: the search (population P, tournament S, at most --max_evaluations
evaluator calls, default --random_samples - 10; defaults P=8, S=3, crossover 0.7) and, separately
(own WER cache), --random_samples distinct random feasible subnets scored on the whole dev set.
With --screen_dev_batches=N the search is two-fidelity (`screened_search`): its evolution scores
candidates on the first N dev batches (and --screen_calibration_batches BatchNorm batches), then its
--finalists best on the whole dev set; its reported WER is that full-dev WER, the same measure as
random's. Reports the best WER each found, evaluator calls and wall time, and the ratios. Target: the
search is at least as good as best-of-random with less time than evaluating the random samples.

Both methods pick their subnet by dev WER, and the best of 50 noisy dev WERs is biased low (the
winner's curse: with ~100 dev utterances two subnets within a few tenths of a point are not told
apart). `--heldout_manifest=M` (e.g. the corpus' test split) re-scores each method's pick on
utterances neither selected on, after both have finished (not counted in either's time), and adds
that comparison to each row.

`--evaluator=toy` uses the synthetic WER surface of `tf_todm.search.toy` (documented there) with
per-config noise `--toy_noise` and an emulated evaluation cost `--toy_eval_ms`; without
`--budgets` it uses three params budgets at 20/45/70 % of the way from the smallest to the largest
subnet of the toy space.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from absl import app, flags

from experiments import search as search_cli

_RANDOM_SAMPLES = flags.DEFINE_integer("random_samples", 50, "Random feasible subnets per budget.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each runs search and random once.")
_HELDOUT_MANIFEST = flags.DEFINE_string(
    "heldout_manifest", None, "Re-score both methods' picks on this manifest (supernet evaluator only), "
    "e.g. the test split: utterances neither method selected on.")
_MAX_HELDOUT_UTTERANCES = flags.DEFINE_integer("max_heldout_utterances", 0,
                                               "First N held-out utterances (0 = all).")


def toy_budgets(costs_fn, space):
    from tf_todm.search.budgets import Budget

    lo, hi = costs_fn(space.smallest()).params, costs_fn(space.largest()).params
    return [Budget(f"params_{int(100 * f)}pct", max_params=int(lo + f * (hi - lo))) for f in (0.2, 0.45, 0.7)]


def run_benchmark(setup, budgets, *, seeds, max_evaluations, random_samples, finalists: int = 4,
                  predictor=None, **search_kwargs) -> list[dict]:
    """One row per (budget, seed) with both methods' best WER, evaluations and wall time.
    `setup["screen_evaluator"]` (if set) makes the search two-fidelity; `predictor` (settings of
    `predictor_search`) makes it predictor-guided."""
    from tf_todm.search.evolution import random_search

    def side(result) -> dict:
        return {"best_wer": result.best_wer, "evaluations": result.num_evaluations,
                "screenings": result.num_screenings, "wall_time_s": result.wall_time_s,
                "evaluation_time_s": result.evaluation_time_s, "config": result.best_config.to_dict(),
                "params": result.best.costs.params,
                "evaluated": [{"config": e.config.to_dict(), "wer": e.wer, "params": e.costs.params}
                              for e in result.evaluated],
                **({"predictor": result.predictor} if result.predictor else {})}

    # The first evaluation of a process traces the evaluator's graphs; done here, outside both
    # methods' clocks, so that whichever runs first is not charged for it.
    for evaluator in (setup["evaluator"], setup.get("screen_evaluator")):
        if evaluator is not None:
            evaluator.evaluate(setup["space"].smallest())
    rows = []
    for budget in budgets:
        for seed in seeds:
            evo = search_cli.search_budget(
                setup["space"], setup["evaluator"], setup["costs_fn"], budget,
                screen_evaluator=setup.get("screen_evaluator"), finalists=finalists, predictor=predictor,
                cache={}, screen_cache={}, seed=seed, max_evaluations=max_evaluations, progress=True,
                **search_kwargs)
            rnd = random_search(setup["space"], setup["evaluator"], setup["costs_fn"], budget,
                                num_samples=random_samples, seed=10_000 + seed, cache={}, progress=True)
            rows.append({"budget": budget.name, "seed": seed, "search": side(evo), "random": side(rnd),
                         "search_at_least_as_good": evo.best_wer <= rnd.best_wer,
                         "time_ratio_search_over_random": evo.wall_time_s / max(rnd.wall_time_s, 1e-9),
                         "break_even_eval_s": _break_even(evo, rnd)})
            heldout = setup.get("heldout_evaluator")
            if heldout is not None:
                rows[-1]["search"]["heldout_wer"] = heldout.evaluate(evo.best_config)
                rows[-1]["random"]["heldout_wer"] = heldout.evaluate(rnd.best_config)
                rows[-1]["search_at_least_as_good_heldout"] = (
                    rows[-1]["search"]["heldout_wer"] <= rows[-1]["random"]["heldout_wer"])
    return rows


def latency_fit_report(setup) -> dict:
    """The latency fit's coefficients, in-sample and leave-one-out errors, and its samples."""
    from tf_todm.search.cost_model import AnalyticCostModel, FittedLatencyModel

    plain = AnalyticCostModel(setup["model_config"])
    samples = setup["measured_latency"].samples()
    macs = [plain(s).macs_per_s for s, _ in samples]
    params = [plain(s).params for s, _ in samples]
    latencies = [y for _, y in samples]
    report = setup["latency_fit"].to_dict()
    report["leave_one_out_pct_error"] = (FittedLatencyModel.leave_one_out_error(macs, params, latencies)
                                         if len(samples) >= 4 else None)
    report["samples"] = [{"key": s.key(), "macs_per_s": m, "params": p, "latency_ms_per_s_audio": y}
                         for (s, y), m, p in zip(samples, macs, params)]
    return report


def _break_even(evo, rnd):
    """Evaluation cost (s per call) above which the search's wall time is below random's:
    overhead_s + n_s·c < overhead_r + n_r·c. None when the search never is (n_s >= n_r), and for a
    two-fidelity search (its calls do not cost the same)."""
    if evo.num_screenings:
        return None
    over_s = evo.wall_time_s - evo.evaluation_time_s
    over_r = rnd.wall_time_s - rnd.evaluation_time_s
    if evo.num_evaluations >= rnd.num_evaluations:
        return None
    return max(0.0, (over_s - over_r) / (rnd.num_evaluations - evo.num_evaluations))


def _calls(side: dict) -> str:
    """'40' evaluations, or '4+40s' for full-dev finalists + screenings."""
    screenings = side.get("screenings") or 0
    return f"{side['evaluations']}+{screenings}s" if screenings else str(side["evaluations"])


def format_rows(rows) -> str:
    lines = [f"{'budget':<16} {'seed':>4} {'search WER%':>11} {'random WER%':>11} {'evals s/r':>11} "
             f"{'time s/r (s)':>15} {'ratio':>6} {'overhead s/r (s)':>17} {'ok':>3}"]
    for r in rows:
        s, q = r["search"], r["random"]
        lines.append(f"{r['budget']:<16} {r['seed']:>4} {100 * s['best_wer']:>11.2f} {100 * q['best_wer']:>11.2f} "
                     f"{_calls(s):>6}/{q['evaluations']:<4} {s['wall_time_s']:>7.2f}/{q['wall_time_s']:<7.2f} "
                     f"{r['time_ratio_search_over_random']:>6.2f} "
                     f"{s['wall_time_s'] - s['evaluation_time_s']:>8.3f}/{q['wall_time_s'] - q['evaluation_time_s']:<8.3f} "
                     f"{'yes' if r['search_at_least_as_good'] else 'no':>3}")
    wins = sum(r["search_at_least_as_good"] for r in rows)
    lines.append(f"search >= random in {wins}/{len(rows)} runs; "
                 f"mean WER gap (random - search) {100 * sum(r['random']['best_wer'] - r['search']['best_wer'] for r in rows) / len(rows):.2f} points")
    held = [r for r in rows if "search_at_least_as_good_heldout" in r]
    for r in held:
        lines.append(f"held-out {r['budget']} seed {r['seed']}: search pick {100 * r['search']['heldout_wer']:.2f} % "
                     f"vs random pick {100 * r['random']['heldout_wer']:.2f} %")
    if held:
        lines.append(f"on held-out data search >= random in "
                     f"{sum(r['search_at_least_as_good_heldout'] for r in held)}/{len(held)} runs")
    even = [r["break_even_eval_s"] for r in rows if r["break_even_eval_s"] is not None]
    if even:
        lines.append(f"search is faster than random whenever one evaluation takes > {1000 * max(even):.0f} ms "
                     f"(worst case over runs; search overhead = cost-model draws for rejection sampling)")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    if not search_cli._OUT.value:
        print("error: --out (JSON result path) is required", file=sys.stderr)
        return 1
    logging.getLogger("tf_todm.search").setLevel(logging.INFO)  # progress lines, as experiments.search
    try:
        seeds = [int(s) for s in _SEEDS.value]
        kind = search_cli._EVALUATOR.value
        predictor = search_cli.predictor_settings()
        if predictor:
            predictor["reference_samples"] = _RANDOM_SAMPLES.value  # the cap is relative to this baseline
        setup = search_cli.build_setup(
            kind, checkpoint=search_cli._CHECKPOINT.value, dev_manifest=search_cli._DEV_MANIFEST.value,
            max_dev_utterances=search_cli._MAX_DEV_UTTERANCES.value, batch_size=search_cli._BATCH_SIZE.value,
            latency_cache=search_cli._LATENCY_CACHE.value, latency_fit=search_cli._LATENCY_FIT.value,
            toy_noise=search_cli._TOY_NOISE.value, toy_eval_ms=search_cli._TOY_EVAL_MS.value,
            calibration_manifest=search_cli._CALIBRATION_MANIFEST.value,
            screen_dev_batches=search_cli._SCREEN_DEV_BATCHES.value,
            screen_calibration_batches=search_cli._SCREEN_CALIBRATION_BATCHES.value,
            heldout_manifest=_HELDOUT_MANIFEST.value, max_heldout_utterances=_MAX_HELDOUT_UTTERANCES.value)
        from tf_todm.search.budgets import load_budgets

        if search_cli._BUDGETS.value:
            budgets = load_budgets(search_cli._BUDGETS.value)
        elif kind == "toy":
            budgets = toy_budgets(setup["costs_fn"], setup["space"])
        else:
            raise ValueError("--budgets is required with --evaluator=supernet")
        max_evaluations = search_cli._MAX_EVALUATIONS.value
        if max_evaluations is None:
            max_evaluations = _RANDOM_SAMPLES.value - 10
        start = time.perf_counter()
        rows = run_benchmark(setup, budgets, seeds=seeds, max_evaluations=max_evaluations,
                             random_samples=_RANDOM_SAMPLES.value, finalists=search_cli._FINALISTS.value,
                             predictor=predictor, **search_cli.search_kwargs())
    except (ValueError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result = {"argv": sys.argv, "evaluator": kind, "seeds": seeds, **search_cli.search_kwargs(),
              **search_cli.screening_settings(), "predictor": predictor,
              "max_evaluations": max_evaluations,
              "random_samples": _RANDOM_SAMPLES.value, "toy_noise": search_cli._TOY_NOISE.value,
              "toy_eval_ms": search_cli._TOY_EVAL_MS.value,
              "budgets": [b.to_dict() for b in budgets], "rows": rows,
              "search_at_least_as_good": sum(r["search_at_least_as_good"] for r in rows),
              "heldout_manifest": _HELDOUT_MANIFEST.value,
              "search_at_least_as_good_heldout": (
                  sum(r["search_at_least_as_good_heldout"] for r in rows) if _HELDOUT_MANIFEST.value else None),
              "runs": len(rows), "wall_time_s": time.perf_counter() - start}
    if setup["latency_fit"] is not None:
        result["latency_fit"] = latency_fit_report(setup)
    out = search_cli._OUT.value
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(format_rows(rows))
    if "latency_fit" in result:
        fit = result["latency_fit"]
        print(f"latency fit on {fit['num_samples']} measured subnets: {fit['macs_coef']:.3g}·MACs/s + "
              f"{fit['params_coef']:.3g}·params + {fit['intercept']:.3g} ms/s; mean abs error "
              f"{fit['mean_abs_pct_error']:.1f} % in-sample, {fit['leave_one_out_pct_error']:.1f} % leave-one-out")
    print(f"wrote {out}")
    return 0


BENCHMARK_DEFAULTS = {"population": 8, "tournament": 3, "crossover_prob": 0.7}
"""Settings for a ~40-evaluation search (tuned on the toy surface, seeds 0-9; see the report)."""


def run():
    for name, value in BENCHMARK_DEFAULTS.items():
        flags.FLAGS.set_default(name, value)
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
