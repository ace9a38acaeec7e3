"""tf_todm.search.predictor_search on the toy surface: determinism, budgets, the brute-force optimum,
neighbours, and what it reports."""

import os
import sys

import numpy as np
import pytest

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.budgets import Budget
from tf_todm.search.cost_model import AnalyticCostModel
from tf_todm.search.evolution import InfeasibleBudgetError
from tf_todm.search.predictor_search import predictor_search, single_gene_neighbours
from tf_todm.search.toy import ToyWerEvaluator, toy_model_config, toy_space

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # --import-mode=importlib
from search_fixtures import SMALL_CFG as CFG, SMALL_SPACE, all_configs as _all_configs  # noqa: E402


def _genes(c):
    return list(c.ff_dims) + list(c.num_heads) + list(c.conv_dims) + [c.predictor_dim, c.joiner_dim]


def test_single_gene_neighbours_equal_the_brute_force_hamming_one_set():
    space = SearchSpace((1, 2, 3), (8, 16, 24), (1, 2), (4, 8), (4, 8), (4, 8))
    config = SubnetConfig(2, (16, 8), (2, 1), (4, 8), 8, 4)
    got = single_gene_neighbours(config, space)
    assert len({c.key() for c in got}) == len(got)
    same_depth = {c.key() for c in got if c.num_blocks == 2}
    brute = {c.key() for c in _all_configs(space) if c.num_blocks == 2
             and sum(a != b for a, b in zip(_genes(c), _genes(config))) == 1}
    assert same_depth == brute
    deeper = [c for c in got if c.num_blocks == 3]
    shallower = [c for c in got if c.num_blocks == 1]
    assert [c.to_dict() for c in deeper] == [SubnetConfig(3, (16, 8, 8), (2, 1, 1), (4, 8, 8), 8, 4).to_dict()]
    assert [c.to_dict() for c in shallower] == [SubnetConfig(1, (16,), (2,), (4,), 8, 4).to_dict()]
    assert all(space.contains(c) for c in got)


def test_same_seed_same_history_other_seed_differs_and_the_winner_is_the_best_evaluated():
    space = toy_space()
    costs = AnalyticCostModel(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("mid", max_params=(lo + hi) // 2)
    runs = [predictor_search(space, ToyWerEvaluator(space, noise_std=0.01), costs, budget, initial=10,
                             rounds=3, per_round=4, pool=300, seed=seed) for seed in (5, 5, 6)]
    assert runs[0].history == runs[1].history and runs[0].best == runs[1].best
    assert runs[0].history != runs[2].history
    result = runs[0]
    assert result.num_evaluations == 10 + 3 * 4 == len(result.evaluated)
    assert [h["source"] for h in result.history] == ["init"] * 10 + ["predicted"] * 12
    assert [h["round"] for h in result.history[10:]] == [1] * 4 + [2] * 4 + [3] * 4
    assert result.best_wer == min(e.wer for e in result.evaluated)
    assert all(e.costs.params <= budget.max_params for e in result.evaluated)
    assert all(np.isfinite(h["predicted_wer"]) for h in result.history[10:])
    assert -1.0 <= result.predictor["leave_one_out_rank_correlation"] <= 1.0
    assert result.predictor["num_fitted"] == 22 and "joiner_dim=64" in result.predictor["weights"]
    assert result.to_dict()["predictor"] == result.predictor


@pytest.mark.parametrize("fraction", [0.5, 0.6])
def test_predictor_search_finds_the_brute_force_optimum_in_few_evaluations(fraction):
    costs = AnalyticCostModel(CFG)
    evaluator = ToyWerEvaluator(SMALL_SPACE)
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=int(lo + fraction * (hi - lo)))
    feasible = sorted((evaluator.wer(c), c.key(), c) for c in _all_configs(SMALL_SPACE)
                      if costs(c).params <= budget.max_params)
    assert feasible[1][0] - feasible[0][0] > 1e-6  # the optimum is unique
    result = predictor_search(SMALL_SPACE, evaluator, costs, budget, initial=16, rounds=4, per_round=4,
                              pool=400, seed=0)
    assert result.best_config == feasible[0][2]
    assert result.num_evaluations == evaluator.num_calls == 32 < len(feasible) / 4


def test_per_position_predictor_search_shares_the_initial_draw_and_reports_its_features():
    costs = AnalyticCostModel(CFG)
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=int(lo + 0.5 * (hi - lo)))
    runs = {flag: predictor_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, initial=12, rounds=2,
                                   per_round=4, pool=300, seed=3, per_position=flag) for flag in (False, True)}
    assert runs[True].history[:12] == runs[False].history[:12]  # same initial subnets; only the ranking differs
    assert runs[True].predictor["per_position"] is True and runs[False].predictor["per_position"] is False
    assert any(name.startswith("block 0 ") for name in runs[True].predictor["weights"])
    assert not any(name.startswith("block 0 ") for name in runs[False].predictor["weights"])
    assert runs[True].best_wer == min(e.wer for e in runs[True].evaluated)


def test_impossible_budget_tight_budget_shared_cache_and_bad_arguments():
    costs = AnalyticCostModel(CFG)
    smallest = costs(SMALL_SPACE.smallest()).params
    with pytest.raises(InfeasibleBudgetError, match="budget 'tiny' is impossible"):
        predictor_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, Budget("tiny", max_params=smallest - 1))
    # only the smallest subnet fits: one evaluation, no rounds to run
    tight = predictor_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs,
                             Budget("tight", max_params=smallest), initial=4, pool=10)
    assert tight.best_config == SMALL_SPACE.smallest() and tight.num_evaluations == 1
    budget = Budget("all", max_params=costs(SMALL_SPACE.largest()).params)
    evaluator, cache = ToyWerEvaluator(SMALL_SPACE), {}
    first = predictor_search(SMALL_SPACE, evaluator, costs, budget, initial=6, rounds=2, per_round=3,
                             pool=50, seed=1, cache=cache)
    again = predictor_search(SMALL_SPACE, evaluator, costs, budget, initial=6, rounds=2, per_round=3,
                             pool=50, seed=1, cache=cache)
    assert first.num_evaluations == 12 == len(cache) and again.num_evaluations == 0
    assert again.history == [dict(h, cached=True) for h in first.history]
    with pytest.raises(ValueError, match="need initial >= 2"):
        predictor_search(SMALL_SPACE, evaluator, costs, budget, initial=1)


def test_depth_stratified_draws_cover_every_depth_the_budget_allows():
    from tf_todm.search.evolution import Scorer
    from tf_todm.search.predictor_search import feasible_depths

    space = toy_space()
    costs = AnalyticCostModel(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("tight", max_params=lo + (hi - lo) // 4)
    scorer = Scorer(ToyWerEvaluator(space), costs, budget, None, None)
    depths = feasible_depths(space, scorer)
    # brute force over depth: a depth is feasible iff its narrowest subnet is
    s = space.smallest()
    for n in space.num_blocks_choices:
        narrowest = SubnetConfig(n, (s.ff_dims[0],) * n, (s.num_heads[0],) * n, (s.conv_dims[0],) * n,
                                 s.predictor_dim, s.joiner_dim)
        assert (n in depths) == (costs(narrowest).params <= budget.max_params)
    assert len(depths) >= 3
    runs = {flag: predictor_search(space, ToyWerEvaluator(space), costs, budget, initial=40, rounds=0,
                                   pool=0, stratify_depth=flag, seed=0) for flag in (False, True)}
    counts = {flag: np.bincount([e.config.num_blocks for e in r.evaluated], minlength=7)
              for flag, r in runs.items()}
    assert depths == [2, 3, 4, 5, 6] and counts[False][5:].sum() == 0  # uniform: no deep subnet kept
    assert all(counts[True][n] >= 2 for n in (2, 3, 4, 5))  # stratified: the deep ones too
    # depth 6 holds ~1 feasible subnet per 2000 draws: it may be dropped, but never starves the others
    assert len(runs[True].evaluated) == 40
    assert all(e.costs.params <= budget.max_params for r in runs.values() for e in r.evaluated)
    with pytest.raises(ValueError, match="depth 9 not in choices"):
        space.sample(np.random.default_rng(0), depth=9)


def test_reference_cost_is_the_random_baselines_expected_cost_by_brute_force():
    from tf_todm.search.evolution import Scorer
    from tf_todm.search.predictor_search import evaluation_cost, reference_cost

    costs = AnalyticCostModel(CFG)
    lo, hi = costs(SMALL_SPACE.smallest()).params, costs(SMALL_SPACE.largest()).params
    budget = Budget("b", max_params=int(lo + 0.5 * (hi - lo)))
    feasible = [c for c in _all_configs(SMALL_SPACE) if costs(c).params <= budget.max_params]
    # the baseline itself, run 300 times: random_search's own draws (its own code path)
    from tf_todm.search.evolution import random_search
    runs = [random_search(SMALL_SPACE, ToyWerEvaluator(SMALL_SPACE), costs, budget, num_samples=10, seed=seed)
            for seed in range(300)]
    baseline = np.mean([sum(evaluation_cost(e.config) for e in r.evaluated) for r in runs], dtype=np.float64)
    scorer = Scorer(ToyWerEvaluator(SMALL_SPACE), costs, budget, None, None)
    assert reference_cost(SMALL_SPACE, scorer, 10, seed=3, repeats=300) == pytest.approx(baseline, rel=0.03)
    # as many samples as feasible subnets: the baseline evaluates every one of them, exactly
    everything = sum(c.num_blocks + 1.7 for c in feasible)
    assert reference_cost(SMALL_SPACE, scorer, len(feasible) + 5, seed=0, repeats=2) == pytest.approx(everything)
    assert evaluation_cost(SMALL_SPACE.largest(), 0.5) == 2.5
    tight = Budget("t", max_params=costs(SMALL_SPACE.smallest()).params)
    scorer = Scorer(ToyWerEvaluator(SMALL_SPACE), costs, tight, None, None)
    assert reference_cost(SMALL_SPACE, scorer, 50, seed=0, repeats=2) == pytest.approx(1 + 1.7)


def test_cost_cap_stops_the_search_early_on_a_prefix_of_its_uncapped_history():
    from tf_todm.search.predictor_search import evaluation_cost

    space = toy_space()
    costs = AnalyticCostModel(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("mid", max_params=(lo + hi) // 2)
    settings = dict(initial=10, rounds=4, per_round=6, pool=300, stratify_depth=True, seed=2)
    free = predictor_search(space, ToyWerEvaluator(space), costs, budget, **settings)
    free_cost = sum(evaluation_cost(e.config) for e in free.evaluated)
    assert "cost" not in free.predictor
    for cap in (0.3, 0.5):
        capped = predictor_search(space, ToyWerEvaluator(space), costs, budget, cost_cap=cap,
                                  reference_samples=50, **settings)
        report = capped.predictor["cost"]
        spent = sum(evaluation_cost(e.config) for e in capped.evaluated)
        assert report["spent"] == pytest.approx(spent) and report["cap"] == pytest.approx(cap * report["reference"])
        assert report["stopped_by_cap"] and spent <= report["cap"] < free_cost
        # the next subnet the uncapped search scored would have crossed the cap
        n = len(capped.history)
        assert capped.history == free.history[:n]
        assert spent + evaluation_cost(free.evaluated[n].config) > report["cap"]
        assert capped.best_wer == min(h["wer"] for h in free.history[:n])
    roomy = predictor_search(space, ToyWerEvaluator(space), costs, budget, cost_cap=10.0, **settings)
    assert roomy.history == free.history and not roomy.predictor["cost"]["stopped_by_cap"]
    with pytest.raises(ValueError, match="cost_cap >= 0"):
        predictor_search(space, ToyWerEvaluator(space), costs, budget, cost_cap=-1.0)


def test_uniform_draw_feasible_draws_what_random_search_evaluates():
    from tf_todm.search.evolution import Scorer, random_search
    from tf_todm.search.predictor_search import draw_feasible

    space = toy_space()
    costs = AnalyticCostModel(toy_model_config())
    lo, hi = costs(space.smallest()).params, costs(space.largest()).params
    budget = Budget("mid", max_params=lo + (hi - lo) // 3)
    for seed in (0, 7):
        baseline = random_search(space, ToyWerEvaluator(space), costs, budget, num_samples=25, seed=seed)
        drawn = draw_feasible(space, np.random.default_rng(seed), Scorer(None, costs, budget, None, None), 25,
                              100_000, set())
        assert [c.key() for c in drawn] == [e.config.key() for e in baseline.evaluated]
