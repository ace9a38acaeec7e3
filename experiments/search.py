"""Hardware-aware evolutionary search of the trained supernet, one subnet per device budget.

  python -m experiments.search --checkpoint=artifacts/run --budgets=budgets.json --out=DIR \
      --dev_manifest=data/default/dev.jsonl [--max_dev_utterances=200 --population=16 --cycles=100
      --seed=0 --latency_cache=lat.json]
  python -m experiments.search --evaluator=toy --budgets=budgets.json --out=DIR   # synthetic WER

Writes DIR/search.json (per budget: chosen config, its costs and WER, search statistics; the Pareto
fronts of every evaluated subnet; the settings) and DIR/pareto.png. The WER cache is shared across
budgets, so later budgets reuse earlier evaluations. User errors print one line and exit 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Optional

from absl import app, flags

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Supernet run folder (config.json, ckpt/, tokenizer.model).")
_BUDGETS = flags.DEFINE_string("budgets", None, "JSON budgets file (see tf_todm.search.budgets).")
_OUT = flags.DEFINE_string("out", None, "Output folder for search.json and pareto.png.")
_EVALUATOR = flags.DEFINE_enum("evaluator", "supernet", ["supernet", "toy"],
                               "supernet: dev WER of the checkpoint; toy: the synthetic surface of "
                               "tf_todm.search.toy (no checkpoint, for CI).")
_POPULATION = flags.DEFINE_integer("population", 16, "Population size P.")
_TOURNAMENT = flags.DEFINE_integer("tournament", 4, "Tournament size S.")
_CYCLES = flags.DEFINE_integer("cycles", 100, "Evolution cycles per budget (one child each).")
_MAX_EVALUATIONS = flags.DEFINE_integer("max_evaluations", None, "Evaluator calls per budget (cache hits free).")
_SEED = flags.DEFINE_integer("seed", 0, "Search seed.")
_MUTATE_PROB = flags.DEFINE_float("mutate_prob", 0.1, "Per-gene re-draw probability of a mutation.")
_CROSSOVER_PROB = flags.DEFINE_float("crossover_prob", 0.5, "Probability a child comes from crossover.")
_INIT_CANDIDATES = flags.DEFINE_integer(
    "init_candidates", 16, "Each initial member: the most budget-utilising of this many feasible draws.")
# allow_override: experiments.train_supernet defines the same flag (same meaning); tests and the
# benchmark import both modules into one process.
_DEV_MANIFEST = flags.DEFINE_string("dev_manifest", None, "Dev JSONL manifest (supernet evaluator).",
                                    allow_override=True)
_CALIBRATION_MANIFEST = flags.DEFINE_string(
    "calibration_manifest", None,
    "Training JSONL manifest whose first utterances re-estimate each subnet's BatchNorm statistics "
    "(required for a supernet trained with conv_norm=batch).")
_MAX_DEV_UTTERANCES = flags.DEFINE_integer("max_dev_utterances", 200, "First N dev utterances (0 = all).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Dev batch size.")
_SCREEN_DEV_BATCHES = flags.DEFINE_integer(
    "screen_dev_batches", 0, "Two-fidelity search (supernet evaluator): the evolution scores each "
    "candidate on the first N dev batches only, then --finalists best are scored on the whole dev "
    "set, which picks the winner. 0 = every candidate on the whole dev set.")
_SCREEN_CALIBRATION_BATCHES = flags.DEFINE_integer(
    "screen_calibration_batches", 0, "BatchNorm re-estimation batches while screening (0 = all "
    "of --calibration_manifest's; finalists always use all).")
_FINALISTS = flags.DEFINE_integer("finalists", 4, "Screened subnets re-scored on the whole dev set.")
_PREDICTOR_INITIAL = flags.DEFINE_integer(
    "predictor_initial", 0, "Predictor-guided search (tf_todm.search.predictor_search) instead of "
    "evolution: this many uniform random feasible subnets are scored on the whole dev set first, then "
    "a WER predictor fitted to every score picks the next ones. 0 = evolution.")
_PREDICTOR_ROUNDS = flags.DEFINE_integer("predictor_rounds", 3, "Fit-rank-evaluate rounds of the predictor search.")
_PREDICTOR_PER_ROUND = flags.DEFINE_integer("predictor_per_round", 6, "Subnets scored per predictor round.")
_PREDICTOR_POOL = flags.DEFINE_integer("predictor_pool", 2000,
                                       "Random feasible candidates the predictor ranks (costs only).")
_PREDICTOR_STRATIFY_DEPTH = flags.DEFINE_bool(
    "predictor_stratify_depth", False, "Draw the predictor search's initial subnets and pool depth "
    "first (uniform over the depths the budget allows), then widths.")
_PREDICTOR_PER_POSITION = flags.DEFINE_boolean(
    "predictor_per_position", False, "The predictor search's WER predictor uses one feature per block "
    "position and width choice instead of counts over blocks (tf_todm.search.wer_predictor).")
_PREDICTOR_COST_CAP = flags.DEFINE_float(
    "predictor_cost_cap", 0.0, "Stop the predictor search once its estimated evaluation cost (encoder "
    "blocks + a fixed overhead per subnet) would pass this fraction of what --predictor_cost_reference "
    "uniform random feasible subnets cost. 0 = no cap.")
_PREDICTOR_COST_REFERENCE = flags.DEFINE_integer(
    "predictor_cost_reference", 50, "Random subnets the cost cap is relative to (benchmark_search: "
    "its --random_samples).")
_LATENCY_CACHE = flags.DEFINE_string(
    "latency_cache", None, "MeasuredLatency JSON (key -> ms per s of audio); with --latency_fit a "
    "linear fit on it, else every candidate must be in it.")
_LATENCY_FIT = flags.DEFINE_bool("latency_fit", True, "Estimate latency with a fit on --latency_cache.")
_TOY_NOISE = flags.DEFINE_float("toy_noise", 0.005, "Std of the toy surface's per-config noise.")
_TOY_EVAL_MS = flags.DEFINE_float("toy_eval_ms", 0.0, "Sleep per toy evaluation (emulates cost).")


def load_supernet(checkpoint_dir: str):
    """(model, model_config, tokenizer) of a trained supernet run folder."""
    from tf_todm.training.restore import load_run_tokenizer, load_trained_model
    model = load_trained_model(checkpoint_dir)
    return model, model.config, load_run_tokenizer(checkpoint_dir)


def build_setup(kind: str, *, checkpoint: Optional[str] = None, dev_manifest: Optional[str] = None,
                max_dev_utterances: int = 200, batch_size: int = 16, latency_cache: Optional[str] = None,
                latency_fit: bool = True, toy_noise: float = 0.005, toy_eval_ms: float = 0.0,
                seed: int = 0, calibration_manifest: Optional[str] = None, screen_dev_batches: int = 0,
                screen_calibration_batches: int = 0, heldout_manifest: Optional[str] = None,
                max_heldout_utterances: int = 0) -> dict[str, Any]:
    """{"space", "evaluator", "screen_evaluator" (None: single fidelity), "heldout_evaluator" (None
    without `heldout_manifest`), "costs_fn", "model_config", "latency_fit", "measured_latency"}."""
    from tf_todm.search.cost_model import AnalyticCostModel, FittedLatencyModel, MeasuredLatency

    screen_evaluator = heldout_evaluator = None
    if kind == "toy":
        from tf_todm.search.toy import ToyWerEvaluator, toy_model_config, toy_space

        if screen_dev_batches or heldout_manifest:
            raise ValueError("--screen_dev_batches and --heldout_manifest need --evaluator=supernet "
                             "(the toy surface has no dev set)")

        model_config, space = toy_model_config(), toy_space()
        evaluator = ToyWerEvaluator(space, noise_std=toy_noise, seed=seed, eval_seconds=toy_eval_ms / 1000)
    elif kind == "supernet":
        from tf_todm.data.manifest import read_manifest
        from tf_todm.data.pipeline import make_dataset
        from tf_todm.models.config import search_space
        from tf_todm.search.evaluator import SupernetWerEvaluator

        if not checkpoint:
            raise ValueError("--checkpoint is required with --evaluator=supernet")
        if not dev_manifest:
            raise ValueError("--dev_manifest is required with --evaluator=supernet")
        model, model_config, tokenizer = load_supernet(checkpoint)
        space = search_space(model_config)
        utterances = read_manifest(dev_manifest)
        if max_dev_utterances:
            utterances = utterances[:max_dev_utterances]
        dataset = make_dataset(utterances, tokenizer, batch_size=batch_size, training=False, seed=seed)
        calibration = None
        if calibration_manifest:
            from tf_todm.models.batch_norm_calibration import calibration_batches
            calibration = calibration_batches(read_manifest(calibration_manifest), tokenizer, batch_size)
        evaluator = SupernetWerEvaluator(model, dataset, tokenizer, calibration_dataset=calibration)
        screen_evaluator = screening_evaluator(evaluator, screen_dev_batches, screen_calibration_batches)
        if heldout_manifest:
            heldout = read_manifest(heldout_manifest)
            if max_heldout_utterances:
                heldout = heldout[:max_heldout_utterances]
            heldout_evaluator = evaluator.on_dataset(
                make_dataset(heldout, tokenizer, batch_size=batch_size, training=False, seed=seed))
    else:
        raise ValueError(f"unknown evaluator {kind!r}, expected supernet|toy")

    latency, fit, measured = None, None, None
    if latency_cache:
        if not os.path.exists(latency_cache):
            raise ValueError(f"{latency_cache}: latency cache not found")
        latency = measured = MeasuredLatency(latency_cache)
        if latency_fit:
            fit = FittedLatencyModel.fit_measured(latency, AnalyticCostModel(model_config))
            latency = fit
    costs_fn = AnalyticCostModel(model_config, latency=latency)
    return {"space": space, "evaluator": evaluator, "screen_evaluator": screen_evaluator,
            "heldout_evaluator": heldout_evaluator, "costs_fn": costs_fn, "model_config": model_config, "latency_fit": fit,
            "measured_latency": measured}


def screening_evaluator(evaluator, dev_batches: int, calibration_batches: int = 0):
    """The cheap fidelity of a two-fidelity search (None when `dev_batches` is 0)."""
    if not dev_batches:
        return None
    if dev_batches < 0 or calibration_batches < 0:
        raise ValueError(f"--screen_dev_batches ({dev_batches}) and --screen_calibration_batches "
                         f"({calibration_batches}) must be >= 0")
    return evaluator.subset(dev_batches, calibration_batches or None)


def predictor_settings() -> Optional[dict]:
    """`predictor_search` keyword arguments given by the flags; None when it is off."""
    if not _PREDICTOR_INITIAL.value:
        return None
    if _SCREEN_DEV_BATCHES.value:
        raise ValueError("--predictor_initial and --screen_dev_batches are two different searches; give one")
    return {"initial": _PREDICTOR_INITIAL.value, "rounds": _PREDICTOR_ROUNDS.value,
            "per_round": _PREDICTOR_PER_ROUND.value, "pool": _PREDICTOR_POOL.value,
            "stratify_depth": _PREDICTOR_STRATIFY_DEPTH.value, "per_position": _PREDICTOR_PER_POSITION.value,
            "cost_cap": _PREDICTOR_COST_CAP.value,
            "reference_samples": _PREDICTOR_COST_REFERENCE.value}


def screening_settings() -> dict:
    """The two-fidelity flags, for reports."""
    return {"screen_dev_batches": _SCREEN_DEV_BATCHES.value,
            "screen_calibration_batches": _SCREEN_CALIBRATION_BATCHES.value,
            "finalists": _FINALISTS.value if _SCREEN_DEV_BATCHES.value else None}


def search_kwargs() -> dict:
    """The evolution settings given by the flags (shared with the benchmark)."""
    return {"population": _POPULATION.value, "tournament": _TOURNAMENT.value, "cycles": _CYCLES.value,
            "mutate_prob": _MUTATE_PROB.value, "crossover_prob": _CROSSOVER_PROB.value,
            "init_candidates": _INIT_CANDIDATES.value}


def search_budget(space, evaluator, costs_fn, budget, *, screen_evaluator=None, finalists: int = 4,
                  predictor: Optional[dict] = None, cache: Optional[dict] = None,
                  screen_cache: Optional[dict] = None, **kwargs):
    """One budget's `search`; `screened_search` when a `screen_evaluator` is given (then
    `screen_cache` holds its screening WERs); `predictor_search` with the `predictor` settings when
    given (then only `seed` and `progress` of `kwargs` apply). `kwargs` go to the search."""
    from tf_todm.search.evolution import screened_search, search
    from tf_todm.search.predictor_search import predictor_search

    if predictor:
        return predictor_search(space, evaluator, costs_fn, budget, cache=cache, seed=kwargs.get("seed", 0),
                                progress=kwargs.get("progress", False), **predictor)
    if screen_evaluator is None:
        return search(space, evaluator, costs_fn, budget, cache=cache, **kwargs)
    return screened_search(space, evaluator, screen_evaluator, costs_fn, budget, finalists=finalists,
                           cache=cache, screen_cache=screen_cache, **kwargs)


def search_budgets(space, evaluator, costs_fn, budgets, *, seed: int, max_evaluations: Optional[int] = None,
                   progress: bool = True, screen_evaluator=None, finalists: int = 4,
                   predictor: Optional[dict] = None, **kwargs) -> tuple[list, dict]:
    """Runs `search_budget` per budget with one shared WER cache (and one shared screening cache);
    returns (results, cache)."""
    cache: dict = {}
    screen_cache: dict = {}
    results = [search_budget(space, evaluator, costs_fn, budget, screen_evaluator=screen_evaluator,
                             finalists=finalists, predictor=predictor, cache=cache, screen_cache=screen_cache,
                             seed=seed, max_evaluations=max_evaluations, progress=progress, **kwargs)
               for budget in budgets]
    return results, cache


def report(results, settings: dict, out_dir: str) -> dict:
    """Writes search.json and pareto.png under `out_dir`; returns the JSON dict."""
    from tf_todm.search.pareto import pareto_front, plot_pareto

    def distinct(lists):
        points, seen = [], set()
        for evaluated in lists:
            for e in evaluated:
                if e.config.key() not in seen:
                    seen.add(e.config.key())
                    points.append(e.to_dict())
        return points

    points = distinct(r.evaluated for r in results)  # full-dev WERs only
    screened = distinct(r.screened for r in results)
    second = ("latency_ms_per_s_audio" if any(p["latency_ms_per_s_audio"] is not None for p in points)
              else "macs_per_s")
    data = {
        "settings": settings,
        "budgets": {r.budget.name: {"budget": r.budget.to_dict(), "config": r.best.config.to_dict(),
                                    "key": r.best.config.key(), "wer": r.best.wer,
                                    "costs": r.best.costs.to_dict(),
                                    "num_evaluations": r.num_evaluations, "num_rejected": r.num_rejected,
                                    "num_screenings": r.num_screenings,
                                    "wall_time_s": r.wall_time_s,
                                    **({"predictor": r.predictor} if r.predictor else {})} for r in results},
        "pareto_front": {"params": pareto_front(points, ["params"]),
                         second: pareto_front(points, [second])},
        "evaluated": points,
        "screened": screened,  # two-fidelity search: screening WERs (a dev slice), not comparable
    }
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, ".search.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "search.json"))
    plot_pareto(points, {r.budget.name: r.best.to_dict() for r in results}, os.path.join(out_dir, "pareto.png"))
    return data


def format_table(results) -> str:
    lines = [f"{'budget':<14} {'WER %':>7} {'params':>10} {'int8 KiB':>9} {'MMACs/s':>9} {'ms/s':>7} "
             f"{'evals':>6} {'screens':>7} {'time s':>7}"]
    for r in results:
        c = r.best.costs
        lat = "-" if c.latency_ms_per_s_audio is None else f"{c.latency_ms_per_s_audio:.1f}"
        lines.append(f"{r.budget.name:<14} {100 * r.best.wer:>7.2f} {c.params:>10d} {c.int8_bytes / 1024:>9.1f} "
                     f"{c.macs_per_s / 1e6:>9.1f} {lat:>7} {r.num_evaluations:>6d} {r.num_screenings:>7d} {r.wall_time_s:>7.1f}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    for flag in (_BUDGETS, _OUT):
        if not flag.value:
            print(f"error: --{flag.name} is required", file=sys.stderr)
            return 1
    logging.getLogger("tf_todm.search").setLevel(logging.INFO)
    try:
        from tf_todm.search.budgets import load_budgets

        budgets = load_budgets(_BUDGETS.value)
        predictor = predictor_settings()
        setup = build_setup(_EVALUATOR.value, checkpoint=_CHECKPOINT.value, dev_manifest=_DEV_MANIFEST.value,
                            max_dev_utterances=_MAX_DEV_UTTERANCES.value, batch_size=_BATCH_SIZE.value,
                            latency_cache=_LATENCY_CACHE.value, latency_fit=_LATENCY_FIT.value,
                            toy_noise=_TOY_NOISE.value, toy_eval_ms=_TOY_EVAL_MS.value, seed=_SEED.value,
                            calibration_manifest=_CALIBRATION_MANIFEST.value,
                            screen_dev_batches=_SCREEN_DEV_BATCHES.value,
                            screen_calibration_batches=_SCREEN_CALIBRATION_BATCHES.value)
        start = time.perf_counter()
        results, cache = search_budgets(setup["space"], setup["evaluator"], setup["costs_fn"], budgets,
                                        seed=_SEED.value, max_evaluations=_MAX_EVALUATIONS.value,
                                        screen_evaluator=setup["screen_evaluator"],
                                        finalists=_FINALISTS.value, predictor=predictor,
                                        **search_kwargs())
        fit = setup["latency_fit"]
        settings = {"argv": sys.argv, "evaluator": _EVALUATOR.value, "checkpoint": _CHECKPOINT.value,
                    "seed": _SEED.value, **({} if predictor else search_kwargs()), **screening_settings(),
                    "predictor": predictor,
                    "max_evaluations": _MAX_EVALUATIONS.value,
                    "dev_manifest": _DEV_MANIFEST.value, "max_dev_utterances": _MAX_DEV_UTTERANCES.value,
                    "space": setup["space"].to_dict(), "model_config": _config_dict(setup["model_config"]),
                    "latency_fit": None if fit is None else fit.to_dict(),
                    "total_evaluations": len(cache), "wall_time_s": time.perf_counter() - start}
        report(results, settings, _OUT.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(results))
    print(f"wrote {os.path.join(_OUT.value, 'search.json')} and pareto.png")
    return 0


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
