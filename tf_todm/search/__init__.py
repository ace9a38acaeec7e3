"""tf_todm.search: hardware-aware evolutionary search of subnets under device budgets.

Public API:
  Budget, BudgetError, load_budgets                                   (budgets.py)
  Costs, CostModel, AnalyticCostModel, macs_per_second, macs_breakdown,
  fit_int8_size, MeasuredLatency, FittedLatencyModel, MeasureFn        (cost_model.py)
  search, screened_search, random_search, SearchResult, EvaluatedSubnet,
  Evaluator, InfeasibleBudgetError, budget_utilisation                 (evolution.py)
  predictor_search, single_gene_neighbours                             (predictor_search.py)
  WerPredictor, subnet_features, feature_names, fit_ridge              (wer_predictor.py)
  pareto_front, best_per_bucket, plot_pareto                           (pareto.py)
  SupernetWerEvaluator                                                 (evaluator.py)
  tflite_encoder_latency_fn                                            (latency.py)
  ToyWerEvaluator, toy_model_config, toy_space                         (toy.py)
"""

from tf_todm.search.budgets import Budget, BudgetError, load_budgets
from tf_todm.search.cost_model import (AnalyticCostModel, CostModel, Costs, FittedLatencyModel, MeasuredLatency,
                                       MeasureFn, fit_int8_size, macs_breakdown, macs_per_second)
from tf_todm.search.evaluator import SupernetWerEvaluator
from tf_todm.search.evolution import (EvaluatedSubnet, Evaluator, InfeasibleBudgetError, SearchResult,
                                      budget_utilisation, random_search, screened_search, search)
from tf_todm.search.latency import tflite_encoder_latency_fn
from tf_todm.search.pareto import best_per_bucket, pareto_front, plot_pareto
from tf_todm.search.predictor_search import predictor_search, single_gene_neighbours
from tf_todm.search.toy import ToyWerEvaluator, toy_model_config, toy_space
from tf_todm.search.wer_predictor import WerPredictor, feature_names, fit_ridge, subnet_features

__all__ = ["Budget", "BudgetError", "load_budgets", "Costs", "CostModel", "AnalyticCostModel",
           "macs_per_second", "macs_breakdown", "fit_int8_size", "MeasuredLatency", "FittedLatencyModel",
           "MeasureFn", "search", "screened_search", "random_search", "predictor_search",
           "single_gene_neighbours", "WerPredictor", "subnet_features", "feature_names", "fit_ridge",
           "SearchResult", "EvaluatedSubnet", "Evaluator",
           "InfeasibleBudgetError", "budget_utilisation", "pareto_front", "best_per_bucket", "plot_pareto",
           "SupernetWerEvaluator", "tflite_encoder_latency_fn", "ToyWerEvaluator", "toy_model_config",
           "toy_space"]
