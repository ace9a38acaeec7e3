"""How cheap and how faithful is a screening evaluation (the two-fidelity search's first stage)?

  python -m experiments.probe_search_fidelity --checkpoint=artifacts/demo/supernet \
      --dev_manifest=artifacts/demo/corpus/dev.jsonl \
      --calibration_manifest=artifacts/demo/corpus/train.jsonl --max_dev_utterances=100 \
      --out=artifacts/search_bench/fidelity_probe.json

Scores the same random subnets (seed 0; not the benchmark's) with the full evaluator and with
`subset(dev_batches, calibration_batches)` views, and reports per view the seconds per evaluation
and the Spearman rank correlation of its WERs with the full ones.

A search only ever compares subnets of one budget, so a correlation measured across every size says
little about it. With `--budgets=B.json` the probe draws `--subnets` random feasible subnets inside
EACH budget (as the random baseline does) and reports the correlations per budget; with
`--heldout_manifest` it also scores every subnet on held-out speech, so the dev set's own ranking can
be judged against one that no selection saw. Each budget also gets the WER predictor's
leave-one-out ranking (`tf_todm.search.wer_predictor`, fitted to the other subnets' whole-dev WERs).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from experiments import search as search_cli
from tf_todm.search.wer_predictor import WerPredictor, rank_correlation

_SUBNETS = flags.DEFINE_integer("subnets", 8, "Random subnets; the first only warms the traces up.")
_HELDOUT = flags.DEFINE_string("heldout_manifest", None,
                               "Also score every subnet on this manifest (e.g. the test split).")
_VIEWS = flags.DEFINE_list("views", ["2:8", "2:2", "3:4", "7:2"],
                           "dev_batches:calibration_batches of each screening view.")


def sample_in_budget(space, costs_fn, budget, count: int, rng, max_draws: int = 100_000) -> list:
    """`count` distinct feasible random subnets of `budget` (uniform rejection sampling, as
    `random_search` draws them)."""
    from tf_todm.search.evolution import Scorer
    from tf_todm.search.predictor_search import draw_feasible

    return draw_feasible(space, rng, Scorer(None, costs_fn, budget, None, None), count, max_draws, set())


def score_views(views: dict, subnets: list) -> dict:
    """Per view: seconds per evaluation and the WER of every subnet, in order."""
    scored = {}
    for name, evaluator in views.items():
        start = time.perf_counter()
        wers = [evaluator.evaluate(s) for s in subnets]
        scored[name] = {"seconds_per_evaluation": (time.perf_counter() - start) / len(wers), "wers": wers}
    for view in scored.values():
        view["rank_correlation_with_full"] = rank_correlation(view["wers"], scored["full"]["wers"])
    return scored


def main(argv):
    del argv
    setup = search_cli.build_setup(
        "supernet", checkpoint=search_cli._CHECKPOINT.value, dev_manifest=search_cli._DEV_MANIFEST.value,
        max_dev_utterances=search_cli._MAX_DEV_UTTERANCES.value, batch_size=search_cli._BATCH_SIZE.value,
        calibration_manifest=search_cli._CALIBRATION_MANIFEST.value, heldout_manifest=_HELDOUT.value,
        latency_cache=search_cli._LATENCY_CACHE.value)
    full, space, costs_fn = setup["evaluator"], setup["space"], setup["costs_fn"]
    views = {"full": full}
    for view in _VIEWS.value:
        dev, calibration = (int(x) for x in view.split(":"))
        views[view] = full.subset(dev, calibration)
    if setup["heldout_evaluator"] is not None:
        views["heldout"] = setup["heldout_evaluator"]
    rng = np.random.default_rng(0)
    if search_cli._BUDGETS.value:
        from tf_todm.search.budgets import load_budgets

        groups = {b.name: sample_in_budget(space, costs_fn, b, _SUBNETS.value, rng)
                  for b in load_budgets(search_cli._BUDGETS.value)}
    else:
        groups = {"all sizes": [space.sample(rng) for _ in range(_SUBNETS.value)]}
    for evaluator in views.values():
        evaluator.evaluate(space.smallest())  # traces
    result = {"argv": sys.argv, "groups": {}}
    for group, subnets in groups.items():
        scored = score_views(views, subnets)
        if len(subnets) >= 4:  # the WER predictor, fitted to the other subnets' whole-dev WERs
            loo = WerPredictor(space).leave_one_out(subnets, scored["full"]["wers"])
            scored["predictor (leave-one-out)"] = {
                "seconds_per_evaluation": 0.0, "wers": [float(x) for x in loo],
                "rank_correlation_with_full": rank_correlation(loo, scored["full"]["wers"])}
        result["groups"][group] = {"subnets": [s.to_dict() for s in subnets],
                                   "params": [costs_fn(s).params for s in subnets], "views": scored}
        for name, view in scored.items():
            print(f"{group:>10} {name:>25}: {view['seconds_per_evaluation']:.2f} s/evaluation, "
                  f"rank correlation with full {view['rank_correlation_with_full']:.2f}")
    out = search_cli._OUT.value
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
