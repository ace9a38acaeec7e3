"""How cheap and how faithful is a screening evaluation (the two-fidelity search's first stage)?

  python -m experiments.probe_search_fidelity --checkpoint=artifacts/demo/supernet \
      --dev_manifest=artifacts/demo/corpus/dev.jsonl \
      --calibration_manifest=artifacts/demo/corpus/train.jsonl --max_dev_utterances=100 \
      --out=artifacts/search_bench/fidelity_probe.json

Scores the same random subnets (seed 0; not the benchmark's) with the full evaluator and with
`subset(dev_batches, calibration_batches)` views, and reports per view the seconds per evaluation
and the Spearman rank correlation of its WERs with the full ones.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

from experiments import search as search_cli

_SUBNETS = flags.DEFINE_integer("subnets", 8, "Random subnets; the first only warms the traces up.")
_VIEWS = flags.DEFINE_list("views", ["2:8", "2:2", "3:4", "7:2"],
                           "dev_batches:calibration_batches of each screening view.")


def rank_correlation(a, b) -> float:
    """Spearman's rho (no ties expected) of two equal-length sequences."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv):
    del argv
    setup = search_cli.build_setup(
        "supernet", checkpoint=search_cli._CHECKPOINT.value, dev_manifest=search_cli._DEV_MANIFEST.value,
        max_dev_utterances=search_cli._MAX_DEV_UTTERANCES.value, batch_size=search_cli._BATCH_SIZE.value,
        calibration_manifest=search_cli._CALIBRATION_MANIFEST.value)
    full, space = setup["evaluator"], setup["space"]
    rng = np.random.default_rng(0)
    subnets = [space.sample(rng) for _ in range(_SUBNETS.value)]
    views = {"full": full}
    for view in _VIEWS.value:
        dev, calibration = (int(x) for x in view.split(":"))
        views[view] = full.subset(dev, calibration)
    result = {"argv": sys.argv, "views": {}}
    for name, evaluator in views.items():
        evaluator.evaluate(subnets[0])  # traces
        start = time.perf_counter()
        wers = [evaluator.evaluate(s) for s in subnets[1:]]
        result["views"][name] = {"seconds_per_evaluation": (time.perf_counter() - start) / len(wers),
                                 "wers": wers}
    for name, view in result["views"].items():
        view["rank_correlation_with_full"] = rank_correlation(view["wers"], result["views"]["full"]["wers"])
        print(f"{name:>6}: {view['seconds_per_evaluation']:.2f} s/evaluation, "
              f"rank correlation {view['rank_correlation_with_full']:.2f}")
    out = search_cli._OUT.value
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
