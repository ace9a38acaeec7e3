"""Budget-constrained evolutionary search over subnets.

Regularised (aging) evolution (Real et al., AAAI 2019) with AlphaNet's operators: the initial
population is the smallest subnet plus random feasible subnets; each cycle a tournament of
`tournament` members picks a parent, the child is a mutation of it or of its crossover with a
second tournament winner, infeasible or already-seen children are rejection-sampled away (capped
retries), the child
joins the population and the oldest member leaves. Fitness (dev WER) is cached by config key, so a
cache shared across budgets lets one run per budget build a common Pareto front.

Everything is driven by one seeded `np.random.Generator`: same seed, same history.

`screened_search` is the two-fidelity form (successive-halving style): the evolution's fitness is
a cheap screening WER (a slice of the dev set, fewer calibration batches), and only the best
`finalists` distinct subnets are scored on the full dev set, which alone decides the winner.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Callable, Optional, Protocol

import numpy as np

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.budgets import Budget
from tf_todm.search.cost_model import Costs

logger = logging.getLogger(__name__)


class InfeasibleBudgetError(ValueError):
    """No subnet of the space meets the budget (even the smallest one violates it)."""


class Evaluator(Protocol):
    """Quality of a subnet: `evaluate(subnet) -> dev WER` (lower is better)."""

    def evaluate(self, subnet: SubnetConfig) -> float: ...


CostsFn = Callable[[SubnetConfig], Costs]


@dataclasses.dataclass(frozen=True)
class EvaluatedSubnet:
    """A subnet with its dev WER and costs."""

    config: SubnetConfig
    wer: float
    costs: Costs

    def to_dict(self) -> dict:
        """Flat record: key, config, wer and every cost field (the format `pareto_front` reads)."""
        return {"key": self.config.key(), "config": self.config.to_dict(), "wer": self.wer,
                **self.costs.to_dict()}


@dataclasses.dataclass
class SearchResult:
    """Outcome of one budget's search.

    Attributes:
      budget: the budget searched.
      best: the lowest-WER feasible subnet found (ties: fewer params, then key).
      history: one dict per step, in order: {"step", "source" ("init"|"mutate"|"crossover"),
        "key", "wer", "cached", "best_wer"}; rejected cycles have source "rejected" and no key.
      evaluated: every distinct feasible subnet scored during this search, in first-seen order.
      num_evaluations: calls to the evaluator (cache misses) made by this search.
      num_rejected: candidates discarded because they broke the budget.
      wall_time_s: wall-clock duration of the search.
      evaluation_time_s: the part of `wall_time_s` spent inside `evaluator.evaluate` (and, for a
        screened search, inside the screening evaluator).
      screened: for `screened_search`, every subnet scored by the screening evaluator, with its
        screening WER (`evaluated` then holds the finalists with their full-dev WER).
      num_screenings: screening-evaluator calls (cache misses); 0 for a plain search.
      predictor: for `predictor_search`, the WER predictor's report (weights, leave-one-out
        errors); empty otherwise.
    """

    budget: Budget
    best: EvaluatedSubnet
    history: list[dict]
    evaluated: list[EvaluatedSubnet]
    num_evaluations: int
    num_rejected: int
    wall_time_s: float
    evaluation_time_s: float = 0.0
    screened: list[EvaluatedSubnet] = dataclasses.field(default_factory=list)
    num_screenings: int = 0
    predictor: dict = dataclasses.field(default_factory=dict)

    @property
    def best_config(self) -> SubnetConfig:
        return self.best.config

    @property
    def best_wer(self) -> float:
        return self.best.wer

    def to_dict(self) -> dict:
        return {"budget": self.budget.to_dict(), "best": self.best.to_dict(),
                "num_evaluations": self.num_evaluations, "num_rejected": self.num_rejected,
                "wall_time_s": self.wall_time_s, "evaluation_time_s": self.evaluation_time_s,
                "history": self.history,
                "evaluated": [e.to_dict() for e in self.evaluated],
                "num_screenings": self.num_screenings,
                "screened": [e.to_dict() for e in self.screened],
                **({"predictor": self.predictor} if self.predictor else {})}


class Scorer:
    """Feasibility and fitness with caches; counts evaluator calls and rejections."""

    def __init__(self, evaluator: Evaluator, costs_fn: CostsFn, budget: Budget,
                 cache: Optional[dict], max_evaluations: Optional[int]):
        self.evaluator, self.costs_fn, self.budget = evaluator, costs_fn, budget
        self.cache = {} if cache is None else cache
        self.max_evaluations = max_evaluations
        self.costs: dict[str, Costs] = {}
        self.seen: dict[str, EvaluatedSubnet] = {}
        self.num_evaluations = 0
        self.num_rejected = 0
        self.evaluation_time_s = 0.0

    def cost(self, config: SubnetConfig) -> Costs:
        key = config.key()
        if key not in self.costs:
            self.costs[key] = self.costs_fn(config)
        return self.costs[key]

    def feasible(self, config: SubnetConfig) -> bool:
        ok = self.budget.is_feasible(self.cost(config))
        if not ok:
            self.num_rejected += 1
        return ok

    def exhausted(self) -> bool:
        return self.max_evaluations is not None and self.num_evaluations >= self.max_evaluations

    def score(self, config: SubnetConfig) -> tuple[float, bool]:
        """(wer, cached)."""
        key = config.key()
        cached = key in self.cache
        if not cached:
            start = time.perf_counter()
            wer = float(self.evaluator.evaluate(config))
            self.evaluation_time_s += time.perf_counter() - start
            if not np.isfinite(wer):
                raise ValueError(f"evaluator returned non-finite WER {wer!r} for subnet {key}")
            self.cache[key] = wer
            self.num_evaluations += 1
        if key not in self.seen:
            self.seen[key] = EvaluatedSubnet(config, self.cache[key], self.cost(config))
        return self.cache[key], cached


def check_budget_feasible(space: SearchSpace, costs_fn: CostsFn, budget: Budget) -> Costs:
    """Raises `InfeasibleBudgetError` when `space.smallest()` already violates `budget`.

    Costs grow with every elastic dimension, so the smallest subnet is the cheapest in each cost.
    Returns the smallest subnet's costs.
    """
    costs = costs_fn(space.smallest())
    violations = budget.violations(costs)
    if violations:
        raise InfeasibleBudgetError(
            f"budget {budget.name!r} is impossible: even the smallest subnet violates it "
            f"({', '.join(violations)}; smallest costs: params={costs.params}, "
            f"macs_per_s={costs.macs_per_s:.4g}, int8_bytes={costs.int8_bytes}, "
            f"latency_ms_per_s_audio={costs.latency_ms_per_s_audio})")
    return costs


def sample_feasible(space: SearchSpace, rng: np.random.Generator, scorer: Scorer,
                     max_retries: int) -> Optional[SubnetConfig]:
    for _ in range(max_retries):
        candidate = space.sample(rng)
        if scorer.feasible(candidate):
            return candidate
    return None


def budget_utilisation(costs: Costs, budget: Budget) -> float:
    """max over the budget's limits of cost / limit (1.0 = on the boundary); params when unlimited."""
    limits = budget.limits()
    if not limits:
        return float(costs.params)
    return max(float(getattr(costs, field)) / limit for field, limit in limits.items())


def _sample_initial(space, rng, scorer, max_retries, candidates, exclude) -> Optional[SubnetConfig]:
    """Best-utilising of `candidates` feasible random draws whose key is not in `exclude` (AlphaNet
    samples its initial population inside a targeted cost range; larger subnets inside a budget are
    usually better)."""
    drawn = []
    for _ in range(candidates):
        c = sample_feasible(space, rng, scorer, max_retries)
        if c is not None and c.key() not in exclude:
            drawn.append(c)
    if not drawn:
        return None
    return max(drawn, key=lambda c: budget_utilisation(scorer.cost(c), scorer.budget))


def best_evaluated(evaluated) -> EvaluatedSubnet:
    """Lowest WER; ties: fewer params, then key."""
    return min(evaluated, key=lambda e: (e.wer, e.costs.params, e.config.key()))


def search(space: SearchSpace, evaluator: Evaluator, costs_fn: CostsFn, budget: Budget, *,
           population: int = 16, tournament: int = 4, cycles: int = 100, seed: int = 0,
           progress: bool = False, max_evaluations: Optional[int] = None, max_retries: int = 200,
           mutate_prob: float = 0.2, crossover_prob: float = 0.5, init_candidates: int = 1,
           cache: Optional[dict] = None) -> SearchResult:
    """Aging evolution for the lowest-WER subnet within `budget`.

    Args:
      space: the elastic search space.
      evaluator: `evaluate(subnet) -> dev WER`.
      costs_fn: `costs_fn(subnet) -> Costs` (a `CostModel`).
      budget: the limits every candidate must meet.
      population: population size P (initial random feasible members, incl. the smallest).
      tournament: tournament size S (<= P).
      cycles: evolution cycles after the initial population (one child each).
      seed: seed of the single random generator.
      progress: log progress every 10% of cycles.
      max_evaluations: stop once the evaluator was called this many times (cache hits are free).
      max_retries: candidates drawn per slot before giving up on a feasible one.
      mutate_prob: per-gene re-draw probability of `SearchSpace.mutate`.
      crossover_prob: probability that a child comes from crossover (then mutation).
      init_candidates: each initial member is the best budget-utilising of this many feasible
        random draws (1 = plain uniform rejection sampling).
      cache: key -> WER dict shared across searches (e.g. across budgets); mutated in place.
    Raises:
      InfeasibleBudgetError: when no subnet can meet the budget.
    """
    if population < 1 or tournament < 1 or tournament > population:
        raise ValueError(f"need 1 <= tournament ({tournament}) <= population ({population})")
    if cycles < 0 or max_retries < 1:
        raise ValueError(f"need cycles >= 0 and max_retries >= 1, got {cycles}, {max_retries}")
    if max_evaluations is not None and max_evaluations < 1:
        raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    scorer = Scorer(evaluator, costs_fn, budget, cache, max_evaluations)
    check_budget_feasible(space, scorer.cost, budget)

    history: list[dict] = []
    best_wer = [float("inf")]

    def record(step, source, config, wer, cached):
        best_wer[0] = min(best_wer[0], wer)
        history.append({"step": step, "source": source, "key": config.key(), "wer": wer,
                        "cached": cached, "best_wer": best_wer[0]})

    members: collections.deque = collections.deque()  # of (config, wer), oldest first
    init = [space.smallest()]
    while len(init) < population:
        candidate = _sample_initial(space, rng, scorer, max_retries, init_candidates,
                                    {c.key() for c in init})
        if candidate is None:  # tight budget: walk from feasible members instead
            for _ in range(max_retries):
                parent = init[int(rng.integers(len(init)))]
                candidate = space.mutate(parent, rng, mutate_prob)
                if scorer.feasible(candidate):
                    break
            else:
                candidate = init[int(rng.integers(len(init)))]
        init.append(candidate)
    for config in init:
        if scorer.exhausted():
            break
        wer, cached = scorer.score(config)
        members.append((config, wer))
        record(len(history), "init", config, wer, cached)

    def tournament_winner() -> SubnetConfig:
        size = min(tournament, len(members))
        picks = rng.choice(len(members), size=size, replace=False)
        return min((members[int(i)] for i in picks), key=lambda m: m[1])[0]

    report_every = max(1, cycles // 10)
    for cycle in range(cycles):
        if scorer.exhausted():
            break
        parent = tournament_winner()
        child, source = None, "rejected"
        for _ in range(max_retries):
            if rng.random() < crossover_prob:
                other = tournament_winner()
                candidate = space.mutate(space.crossover(parent, other, rng), rng, mutate_prob)
                kind = "crossover"
            else:
                candidate = space.mutate(parent, rng, mutate_prob)
                kind = "mutate"
            if candidate.key() in scorer.seen:  # only novel children: duplicates teach nothing
                continue
            if scorer.feasible(candidate):
                child, source = candidate, kind
                break
        step = len(history)
        if child is None:
            history.append({"step": step, "source": "rejected", "key": None, "wer": None,
                            "cached": False, "best_wer": best_wer[0]})
            continue
        wer, cached = scorer.score(child)
        members.append((child, wer))
        if len(members) > population:
            members.popleft()
        record(step, source, child, wer, cached)
        if progress and (cycle + 1) % report_every == 0:
            logger.info("search %s: cycle %d/%d, evaluations %d, best WER %.4f", budget.name,
                        cycle + 1, cycles, scorer.num_evaluations, best_wer[0])

    evaluated = list(scorer.seen.values())
    return SearchResult(budget=budget, best=best_evaluated(evaluated), history=history, evaluated=evaluated,
                        num_evaluations=scorer.num_evaluations, num_rejected=scorer.num_rejected,
                        wall_time_s=time.perf_counter() - start,
                        evaluation_time_s=scorer.evaluation_time_s)


def screened_search(space: SearchSpace, evaluator: Evaluator, screen_evaluator: Evaluator,
                    costs_fn: CostsFn, budget: Budget, *, finalists: int = 4,
                    cache: Optional[dict] = None, screen_cache: Optional[dict] = None,
                    **search_kwargs) -> SearchResult:
    """`search` with `screen_evaluator` as fitness, then the `finalists` lowest screening-WER
    subnets (ties: fewer params, then key) scored by `evaluator`; the best full score wins.

    `cache` holds full-fidelity WERs and `screen_cache` screening WERs (keep them apart: the two
    are not comparable). `search_kwargs` go to `search` (`max_evaluations` caps screenings).
    Returns a `SearchResult` whose `evaluated`/`num_evaluations` are the finalists' full scores,
    `screened`/`num_screenings` the screening, `history` the screening steps then one
    "final" step per finalist, and `wall_time_s` the whole.
    """
    if finalists < 1:
        raise ValueError(f"finalists must be >= 1, got {finalists}")
    start = time.perf_counter()
    screen = search(space, screen_evaluator, costs_fn, budget,
                    cache={} if screen_cache is None else screen_cache, **search_kwargs)
    ranked = sorted(screen.evaluated, key=lambda e: (e.wer, e.costs.params, e.config.key()))
    scorer = Scorer(evaluator, costs_fn, budget, cache, None)
    history = list(screen.history)
    best_wer = float("inf")
    for candidate in ranked[:finalists]:
        scorer.costs[candidate.config.key()] = candidate.costs
        wer, cached = scorer.score(candidate.config)
        best_wer = min(best_wer, wer)
        history.append({"step": len(history), "source": "final", "key": candidate.config.key(),
                        "wer": wer, "cached": cached, "best_wer": best_wer,
                        "screen_wer": candidate.wer})
    evaluated = list(scorer.seen.values())
    return SearchResult(budget=budget, best=best_evaluated(evaluated), history=history, evaluated=evaluated,
                        num_evaluations=scorer.num_evaluations, num_rejected=screen.num_rejected,
                        wall_time_s=time.perf_counter() - start,
                        evaluation_time_s=screen.evaluation_time_s + scorer.evaluation_time_s,
                        screened=screen.evaluated, num_screenings=screen.num_evaluations)


def random_search(space: SearchSpace, evaluator: Evaluator, costs_fn: CostsFn, budget: Budget, *,
                  num_samples: int = 50, seed: int = 0, max_retries: int = 10000,
                  cache: Optional[dict] = None, progress: bool = False) -> SearchResult:
    """Baseline: evaluate `num_samples` uniformly random feasible subnets (rejection sampling).

    Duplicates are re-drawn while the space allows; `cache` hits do not count as evaluations.
    `progress`: log every 10% of the samples.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    scorer = Scorer(evaluator, costs_fn, budget, cache, None)
    check_budget_feasible(space, scorer.cost, budget)
    history, best = [], float("inf")
    for step in range(num_samples):
        config = None
        for _ in range(max_retries):
            candidate = sample_feasible(space, rng, scorer, 1)
            if candidate is not None and candidate.key() not in scorer.seen:
                config = candidate
                break
        if config is None:
            break
        wer, cached = scorer.score(config)
        best = min(best, wer)
        history.append({"step": step, "source": "random", "key": config.key(), "wer": wer,
                        "cached": cached, "best_wer": best})
        if progress and (step + 1) % max(1, num_samples // 10) == 0:
            logger.info("random %s: sample %d/%d, best WER %.4f, %.0f s", budget.name, step + 1,
                        num_samples, best, time.perf_counter() - start)
    if not scorer.seen:
        raise InfeasibleBudgetError(
            f"budget {budget.name!r}: no feasible random subnet in {max_retries} draws")
    evaluated = list(scorer.seen.values())
    return SearchResult(budget=budget, best=best_evaluated(evaluated), history=history, evaluated=evaluated,
                        num_evaluations=scorer.num_evaluations, num_rejected=scorer.num_rejected,
                        wall_time_s=time.perf_counter() - start,
                        evaluation_time_s=scorer.evaluation_time_s)
