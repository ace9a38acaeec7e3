"""Predictor-guided search: a WER predictor fitted to whole-dev evaluations ranks the budget's
feasible subnets, and only its best-ranked ones are evaluated (the Once-for-All recipe, with the
predictor refitted after every round).

1. `initial` distinct uniform random feasible subnets are evaluated (the predictor's training set;
   uniform, so it spans the budget rather than one corner of it).
2. A pool of `pool` distinct uniform random feasible subnets is drawn (costs only, no evaluation).
3. Each of `rounds` rounds fits `WerPredictor` to every subnet evaluated so far, ranks the pool plus
   every feasible single-gene neighbour of the `parents` best evaluated subnets, and evaluates the
   `per_round` best-predicted unevaluated ones (distinct feature rows: blocks reordered have one
   prediction, so evaluating more than one of them teaches the predictor nothing new).
4. The winner is the lowest whole-dev WER evaluated: the predictor proposes, only a real evaluation
   decides, so the pick is compared on the same measure as a random baseline's.
5. With `cost_cap`, evaluation stops once the next subnet would take the estimated evaluation cost
   past `cost_cap` times that of `reference_samples` uniform random feasible subnets (the random
   baseline's draw), so a search that favours deep subnets still spends less than that baseline.

Why try it: inside one budget of the demo supernet the 2-batch screening of `screened_search`
ranks subnets with rank correlation 0.61-0.83 against the whole dev set, and its evolution follows
that noise; a predictor pools every evaluation it has seen. Measured (WORKSPACE.md, against the
best of 50 random subnets): with uniform draws no better than the two-fidelity evolution (its
proposals crowd onto one or two depths, whose coefficients rest on few initial draws); with
`stratify_depth` and `cost_cap=0.75`, on 18 runs of seeds no earlier run used, at least as good in
15 on dev and 14 on the test split, faster in all 18. `make demo` uses that setting.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.budgets import Budget
from tf_todm.search.evolution import (CostsFn, Evaluator, Scorer, SearchResult,
                                      best_evaluated, check_budget_feasible)
from tf_todm.search.wer_predictor import WerPredictor, feature_names, rank_correlation

logger = logging.getLogger(__name__)


def single_gene_neighbours(config: SubnetConfig, space: SearchSpace) -> list[SubnetConfig]:
    """Every config that differs from `config` in exactly one gene: one block's ff width, heads or
    conv channels, the predictor or joiner width, or the depth by one block (a new last block
    copies the current last block's widths)."""
    out = []
    blocks = list(zip(config.ff_dims, config.num_heads, config.conv_dims))

    def make(n, blocks_, predictor, joiner):
        return SubnetConfig(n, tuple(b[0] for b in blocks_), tuple(b[1] for b in blocks_),
                            tuple(b[2] for b in blocks_), predictor, joiner)

    for i, block in enumerate(blocks):
        for gene, choices in enumerate((space.ff_dim_choices, space.num_heads_choices, space.conv_dim_choices)):
            for value in choices:
                if value != block[gene]:
                    changed = list(block)
                    changed[gene] = value
                    out.append(make(config.num_blocks, blocks[:i] + [tuple(changed)] + blocks[i + 1:],
                                    config.predictor_dim, config.joiner_dim))
    for value in space.predictor_dim_choices:
        if value != config.predictor_dim:
            out.append(make(config.num_blocks, blocks, value, config.joiner_dim))
    for value in space.joiner_dim_choices:
        if value != config.joiner_dim:
            out.append(make(config.num_blocks, blocks, config.predictor_dim, value))
    if config.num_blocks + 1 in space.num_blocks_choices:
        out.append(make(config.num_blocks + 1, blocks + [blocks[-1]], config.predictor_dim, config.joiner_dim))
    if config.num_blocks - 1 in space.num_blocks_choices:
        out.append(make(config.num_blocks - 1, blocks[:-1], config.predictor_dim, config.joiner_dim))
    return out


EVALUATION_OVERHEAD_BLOCKS = 1.7
"""Per-evaluation cost not proportional to depth, in encoder-block units. Fitted (least squares, no
intercept) to the evaluation times of the 36 stored benchmark sides of the demo supernet (100 dev
utterances, 8 BatchNorm batches): 0.88 s per evaluation + 0.51 s per evaluated block, R^2 0.93,
largest error 15% (WORKSPACE.md gives the command)."""


def evaluation_cost(config: SubnetConfig, overhead_blocks: float = EVALUATION_OVERHEAD_BLOCKS) -> float:
    """Estimated cost of one whole-dev evaluation in encoder-block units: depth + overhead (the
    widths barely matter next to the per-block kernel launches at these sizes)."""
    return config.num_blocks + overhead_blocks


def reference_cost(space: SearchSpace, scorer: "Scorer", samples: int, seed: int,
                   overhead_blocks: float = EVALUATION_OVERHEAD_BLOCKS, repeats: int = 20) -> float:
    """Expected total `evaluation_cost` of the random baseline: `samples` distinct random feasible
    subnets drawn as `random_search` draws them (fewer when the budget holds fewer), averaged over
    `repeats` draws of an rng of its own, so the search's own draws do not depend on it. (Not
    `samples` times the mean over many distinct draws: a long distinct draw uses up the shallow
    subnets, which are few, and overstates the mean depth.) Give it a `Scorer` of its own: its
    rejections count."""
    rng = np.random.default_rng([seed, 1])
    totals = [sum(evaluation_cost(c, overhead_blocks)
                  for c in draw_feasible(space, rng, scorer, samples, 10_000 * samples, set()))
              for _ in range(repeats)]
    return float(np.mean(totals))


_EXHAUSTED_AFTER = 5000
"""Draws without a new feasible subnet after which a budget's feasible set counts as exhausted."""
_TRIES_PER_DEPTH = 1000
"""Depth-stratified drawing: draws at one depth before that depth counts as used up."""


def feasible_depths(space: SearchSpace, scorer: Scorer) -> list[int]:
    """Depths at which some subnet meets the budget: those whose narrowest subnet does (costs grow
    with every width, so it is the cheapest of its depth)."""
    narrowest = space.smallest()
    return [n for n in space.num_blocks_choices
            if scorer.budget.is_feasible(scorer.cost(SubnetConfig(
                n, narrowest.ff_dims[:1] * n, narrowest.num_heads[:1] * n, narrowest.conv_dims[:1] * n,
                narrowest.predictor_dim, narrowest.joiner_dim)))]


def draw_feasible(space: SearchSpace, rng: np.random.Generator, scorer: Scorer, count: int,
                  max_draws: int, exclude: set, depths: Optional[list[int]] = None) -> list[SubnetConfig]:
    """Up to `count` distinct random feasible configs whose keys are not in `exclude`.

    Uniform over the space (rejection sampling, at most `max_draws` draws), or with `depths`
    uniform over those depths first, then widths rejection-sampled at that depth (so a depth whose
    feasible widths are rare still gets its share): up to `_TRIES_PER_DEPTH` draws per pick, and a
    depth at which a pick finds nothing new is dropped (its feasible subnets are used up or too
    rare to draw), so a rare depth cannot eat the draws of the others.
    """
    drawn, keys = [], set(exclude)
    depths = None if depths is None else list(depths)
    tries = 1 if depths is None else _TRIES_PER_DEPTH
    max_draws = max_draws if depths is None else max(max_draws, count * tries)
    draws = since_new = 0
    while len(drawn) < count and draws < max_draws and since_new < _EXHAUSTED_AFTER and depths != []:
        depth = None if depths is None else depths[int(rng.integers(len(depths)))]
        for _ in range(tries):
            draws += 1
            since_new += 1
            candidate = space.sample(rng, depth)
            if candidate.key() not in keys and scorer.feasible(candidate):
                drawn.append(candidate)
                keys.add(candidate.key())
                since_new = 0
                break
        else:
            if depths is not None:
                depths.remove(depth)
    return drawn


def predictor_search(space: SearchSpace, evaluator: Evaluator, costs_fn: CostsFn, budget: Budget, *,
                     initial: int = 16, rounds: int = 3, per_round: int = 6, pool: int = 2000,
                     parents: int = 3, l2: float = 1.0, stratify_depth: bool = False,
                     per_position: bool = False, cost_cap: float = 0.0, reference_samples: int = 50,
                     overhead_blocks: float = EVALUATION_OVERHEAD_BLOCKS, seed: int = 0,
                     progress: bool = False, cache: Optional[dict] = None) -> SearchResult:
    """The lowest whole-dev-WER subnet within `budget` among `initial + rounds * per_round`
    evaluations (fewer when the budget holds fewer subnets); see the module docstring.

    Args:
      space, evaluator, costs_fn, budget: as for `evolution.search`.
      initial: uniform random feasible subnets evaluated first (>= 2: the predictor's first fit).
      rounds: fit-rank-evaluate rounds.
      per_round: subnets evaluated per round.
      pool: uniform random feasible subnets drawn once as candidates (costs only).
      parents: best evaluated subnets whose single-gene neighbours join each round's candidates.
      l2: ridge strength of the predictor.
      stratify_depth: draw the initial subnets and the pool depth first (uniform over the depths
        the budget allows), then widths; uniform draws under a tight budget rarely keep a deep
        narrow subnet, and a depth the predictor has barely seen is never proposed.
      per_position: the predictor's per-block features are per block position rather than counts
        over blocks (`wer_predictor.subnet_features`).
      cost_cap: 0 = no cap; else stop evaluating once the next subnet's `evaluation_cost` would take
        the total past `cost_cap * reference_cost(...)` (cache hits cost nothing).
      reference_samples: random subnets whose expected cost `cost_cap` is relative to.
      overhead_blocks: per-evaluation overhead of `evaluation_cost`.
      seed: seed of the search's random generator (same seed, same history).
      progress: log one line per round.
      cache: key -> WER shared across searches; hits are not evaluator calls.
    Returns:
      `SearchResult`; `history` sources are "init" and "predicted" (with "predicted_wer" and
      "round"); `predictor` holds the final fit's weights by feature, its leave-one-out rank
      correlation and mean absolute error over every evaluated subnet, and with a cap "cost"
      ({"cap", "reference", "spent", "stopped_by_cap"}, block units).
    """
    if initial < 2 or rounds < 0 or per_round < 1 or pool < 0 or parents < 0 or cost_cap < 0 \
            or reference_samples < 1:
        raise ValueError(f"predictor_search: need initial >= 2, rounds >= 0, per_round >= 1, pool >= 0, "
                         f"parents >= 0, cost_cap >= 0, reference_samples >= 1; got {initial}, {rounds}, "
                         f"{per_round}, {pool}, {parents}, {cost_cap}, {reference_samples}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    scorer = Scorer(evaluator, costs_fn, budget, cache, None)
    check_budget_feasible(space, scorer.cost, budget)
    history: list[dict] = []
    best = [float("inf")]
    reference = reference_cost(space, Scorer(evaluator, costs_fn, budget, None, None), reference_samples,
                               seed, overhead_blocks) if cost_cap else 0.0
    cap = cost_cap * reference if cost_cap else float("inf")
    spent, capped = [0.0], [False]

    def evaluate(config: SubnetConfig, source: str, **extra) -> bool:
        """Scores `config` unless the cap forbids it; False (and no more evaluations) then."""
        cost = 0.0 if config.key() in scorer.cache else evaluation_cost(config, overhead_blocks)
        if capped[0] or spent[0] + cost > cap:
            capped[0] = True
            return False
        spent[0] += cost
        wer, cached = scorer.score(config)
        best[0] = min(best[0], wer)
        history.append({"step": len(history), "source": source, "key": config.key(), "wer": wer,
                        "cached": cached, "best_wer": best[0], **extra})
        return True

    depths = feasible_depths(space, scorer) if stratify_depth else None
    first = draw_feasible(space, rng, scorer, initial, 200 * initial, set(), depths)
    if len(first) < 2 and space.smallest().key() not in {c.key() for c in first}:
        first.append(space.smallest())  # a budget (almost) only the smallest subnet meets
    for config in first:
        if not evaluate(config, "init"):
            break
    pool_draws = draw_feasible(space, rng, scorer, pool, 20 * pool, set(scorer.seen), depths)
    candidates = {c.key(): c for c in pool_draws}
    predictor = WerPredictor(space, l2, per_position)
    for round_ in range(1, rounds + 1):
        if capped[0]:
            break
        evaluated = list(scorer.seen.values())
        if len(evaluated) < 2:
            break
        predictor.fit([e.config for e in evaluated], [e.wer for e in evaluated])
        ranked_parents = sorted(evaluated, key=lambda e: (e.wer, e.costs.params, e.config.key()))[:parents]
        for parent in ranked_parents:
            for neighbour in single_gene_neighbours(parent.config, space):
                if neighbour.key() not in candidates and neighbour.key() not in scorer.seen \
                        and space.contains(neighbour) and scorer.feasible(neighbour):
                    candidates[neighbour.key()] = neighbour
        open_ = sorted((c for k, c in candidates.items() if k not in scorer.seen), key=lambda c: c.key())
        if not open_:
            break
        features = predictor.features(open_)
        predicted = features @ predictor.weights
        chosen, rows = 0, set()
        for i in np.lexsort((np.arange(len(open_)), predicted)):
            row = tuple(features[i])
            if row in rows:
                continue
            rows.add(row)
            if not evaluate(open_[i], "predicted", predicted_wer=float(predicted[i]), round=round_):
                break
            chosen += 1
            if chosen == per_round:
                break
        if progress:
            logger.info("predictor search %s: round %d/%d, evaluations %d, best WER %.4f, %.0f s",
                        budget.name, round_, rounds, scorer.num_evaluations, best[0],
                        time.perf_counter() - start)
    evaluated = list(scorer.seen.values())
    configs, wers = [e.config for e in evaluated], np.array([e.wer for e in evaluated])
    report: dict = {"l2": l2, "num_fitted": len(evaluated), "per_position": per_position}
    if cost_cap:
        report["cost"] = {"cap": cap, "reference": reference, "spent": spent[0], "stopped_by_cap": capped[0]}
    if len(evaluated) >= 3:
        loo = predictor.leave_one_out(configs, wers)
        report.update(leave_one_out_rank_correlation=rank_correlation(loo, wers),
                      leave_one_out_mean_abs_error=float(np.mean(np.abs(loo - wers))))
        predictor.fit(configs, wers)
        report["weights"] = dict(zip(feature_names(space, per_position), map(float, predictor.weights)))
    return SearchResult(budget=budget, best=best_evaluated(evaluated), history=history, evaluated=evaluated,
                        num_evaluations=scorer.num_evaluations, num_rejected=scorer.num_rejected,
                        wall_time_s=time.perf_counter() - start,
                        evaluation_time_s=scorer.evaluation_time_s, predictor=report)
