import os
import sys

import numpy as np
import pytest

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.budgets import Budget
from tf_todm.search.cost_model import AnalyticCostModel
from tf_todm.search.cost_model import Costs
from tf_todm.search.evolution import (InfeasibleBudgetError, budget_utilisation, random_search, screened_search,
                                      search)
from tf_todm.search.toy import ToyWerEvaluator, toy_model_config, toy_space

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # --import-mode=importlib
from search_fixtures import SMALL_CFG as CFG, SMALL_SPACE, all_configs as _all_configs  # noqa: E402


def _costs(cfg=CFG):
    return AnalyticCostModel(cfg)  # exact parameter counts from count_params


def test_same_seed_same_history_and_other_seed_differs():
    space = toy_space()
    costs = _costs(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("mid", max_params=(lo + hi) // 2)
    runs = [search(space, ToyWerEvaluator(space, noise_std=0.01), costs, budget, population=8,
                   tournament=3, cycles=30, seed=seed) for seed in (5, 5, 6)]
    assert runs[0].history == runs[1].history
    assert runs[0].best == runs[1].best
    assert runs[0].history != runs[2].history
    assert len(runs[0].history) == 8 + 30


def test_impossible_budget_names_budget_and_smallest_costs():
    costs = _costs()
    smallest = costs(SMALL_SPACE.smallest())
    budget = Budget("too-small", max_params=smallest.params - 1)
    with pytest.raises(InfeasibleBudgetError) as info:
        search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, cycles=3)
    message = str(info.value)
    assert "budget 'too-small' is impossible" in message
    assert f"params={smallest.params} > {smallest.params - 1}" in message
    assert f"int8_bytes={smallest.int8_bytes}" in message
    assert "\n" not in message
    with pytest.raises(InfeasibleBudgetError):
        random_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, num_samples=3)


@pytest.mark.parametrize("fraction", [0.5, 0.6])
def test_search_finds_the_brute_force_optimum_under_a_params_budget(fraction):
    costs = _costs()
    evaluator = ToyWerEvaluator(SMALL_SPACE)
    configs = list(_all_configs(SMALL_SPACE))
    assert len(configs) == 624
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=int(lo + fraction * (hi - lo)))
    feasible = sorted((evaluator.wer(c), c.key(), c) for c in configs if costs(c).params <= budget.max_params)
    assert feasible[1][0] - feasible[0][0] > 1e-6  # the optimum is unique
    result = search(SMALL_SPACE, evaluator, costs, budget, population=12, tournament=4, cycles=150,
                    seed=0)
    assert result.best_config == feasible[0][2]
    assert result.best_wer == pytest.approx(feasible[0][0])
    # It did not just enumerate the space: the optimum came within the first third of the
    # feasible set's size in evaluations.
    evaluated_keys = [h["key"] for h in result.history if h["key"] and not h["cached"]]
    assert evaluated_keys.index(feasible[0][1]) < len(feasible) / 3
    assert evaluator.num_calls == result.num_evaluations
    for e in result.evaluated:
        assert SMALL_SPACE.contains(e.config)
        assert e.costs.params <= budget.max_params


def test_evaluation_cap_and_shared_cache():
    costs = _costs()
    budget = Budget("b", max_params=costs(SMALL_SPACE.largest()).params)
    evaluator = ToyWerEvaluator(SMALL_SPACE)
    cache = {}
    first = search(SMALL_SPACE, evaluator, costs, budget, population=6, tournament=2, cycles=100,
                   seed=1, max_evaluations=20, cache=cache)
    assert first.num_evaluations == 20 == evaluator.num_calls
    assert len(cache) == 20
    again = search(SMALL_SPACE, evaluator, costs, budget, population=6, tournament=2, cycles=100,
                   seed=1, max_evaluations=20, cache=cache)
    # Same seed, same walk: the first run's steps come free from the cache, then 20 new ones.
    assert again.history[:len(first.history)] == [dict(h, cached=True) for h in first.history]
    assert again.num_evaluations == 20 and len(cache) == 40 == evaluator.num_calls
    # best is monotone along the history and equals the minimum seen
    best = [h["best_wer"] for h in first.history if h["key"]]
    assert best == list(np.minimum.accumulate(best))
    assert first.best_wer == min(e.wer for e in first.evaluated)


def test_budget_that_only_the_smallest_meets_returns_it():
    costs = _costs()
    budget = Budget("tight", max_params=costs(SMALL_SPACE.smallest()).params)
    result = search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, population=4,
                    tournament=2, cycles=5, seed=0, max_retries=20)
    assert result.best_config == SMALL_SPACE.smallest()
    assert {h["source"] for h in result.history} <= {"init", "rejected"}


def test_random_search_draws_distinct_feasible_subnets():
    costs = _costs()
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=(lo + hi) // 2)
    result = random_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, num_samples=30, seed=2)
    keys = [e.config.key() for e in result.evaluated]
    assert len(keys) == len(set(keys)) == 30 == result.num_evaluations
    assert all(e.costs.params <= budget.max_params for e in result.evaluated)


def test_bad_arguments():
    costs = _costs()
    with pytest.raises(ValueError, match="tournament"):
        search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, Budget("b"), population=2, tournament=3)
    with pytest.raises(ValueError, match="max_evaluations"):
        search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, Budget("b"), max_evaluations=0)


def test_budget_utilisation_and_utilising_initial_population():
    budget = Budget("b", max_params=200, max_macs_per_s=1000.0)
    assert budget_utilisation(Costs(100, 900.0, 5), budget) == pytest.approx(0.9)
    assert budget_utilisation(Costs(150, 300.0, 5), budget) == pytest.approx(0.75)
    assert budget_utilisation(Costs(150, 300.0, 5), Budget("free")) == 150.0
    space, costs = toy_space(), _costs(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("mid", max_params=(lo + hi) // 2)

    def initial_params(init_candidates):
        result = search(space, ToyWerEvaluator(space), costs, budget, population=10, tournament=3,
                        cycles=0, seed=4, init_candidates=init_candidates)
        return [e.costs.params for e in result.evaluated[1:]]  # [0] is the smallest subnet

    plain, utilising = initial_params(1), initial_params(16)
    assert all(p <= budget.max_params for p in plain + utilising)
    assert np.mean(utilising) > np.mean(plain)
    assert np.mean(utilising) > 0.85 * budget.max_params > np.mean(plain)


def test_screened_search_rescores_the_best_screened_subnets_at_full_fidelity():
    """Screening WER = the exact surface + noise; the finalists (best screening WERs) are re-scored
    by the exact surface, which alone picks the winner."""
    costs = _costs()
    exact = ToyWerEvaluator(SMALL_SPACE)
    noisy = ToyWerEvaluator(SMALL_SPACE, noise_std=0.01, seed=4)
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=int(lo + 0.5 * (hi - lo)))
    cache, screen_cache = {}, {}
    result = screened_search(SMALL_SPACE, exact, noisy, costs, budget, finalists=3, cache=cache,
                             screen_cache=screen_cache, population=8, tournament=3, cycles=40,
                             seed=2)
    plain = search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE, noise_std=0.01, seed=4), costs, budget,
                   population=8, tournament=3, cycles=40, seed=2)
    assert [e.config for e in result.screened] == [e.config for e in plain.evaluated]
    assert result.num_screenings == plain.num_evaluations == noisy.num_calls == len(screen_cache)
    ranked = sorted(plain.evaluated, key=lambda e: (e.wer, e.costs.params, e.config.key()))
    assert [e.config for e in result.evaluated] == [e.config for e in ranked[:3]]
    assert result.num_evaluations == 3 == exact.num_calls == len(cache)
    for e in result.evaluated:
        assert e.wer == exact.wer(e.config) == cache[e.config.key()]
    assert result.best_wer == min(exact.wer(e.config) for e in ranked[:3])
    finals = [h for h in result.history if h["source"] == "final"]
    assert [h["screen_wer"] for h in finals] == [e.wer for e in ranked[:3]]
    assert result.history[:len(plain.history)] == plain.history
    with pytest.raises(ValueError, match="finalists must be >= 1, got 0"):
        screened_search(SMALL_SPACE, exact, noisy, costs, budget, finalists=0)
