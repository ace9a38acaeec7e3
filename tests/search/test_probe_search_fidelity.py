"""experiments.probe_search_fidelity.rank_correlation against a brute-force Spearman rho."""
import numpy as np

from experiments.probe_search_fidelity import rank_correlation


def test_rank_correlation_matches_the_textbook_formula():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.normal(size=7), rng.normal(size=7)
        ra = np.array([sorted(a).index(x) for x in a], float)
        rb = np.array([sorted(b).index(x) for x in b], float)
        rho = 1 - 6 * np.sum((ra - rb) ** 2) / (7 * (7 ** 2 - 1))  # no ties
        assert abs(rank_correlation(a, b) - rho) < 1e-12
    assert rank_correlation([1, 2, 3], [30, 20, 10]) == -1.0
