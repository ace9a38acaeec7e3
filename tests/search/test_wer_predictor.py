"""tf_todm.search.wer_predictor (rank correlation, features, ridge fit) against a brute-force Spearman rho."""
import numpy as np

from tf_todm.search.wer_predictor import rank_correlation


def test_rank_correlation_matches_the_textbook_formula():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.normal(size=7), rng.normal(size=7)
        ra = np.array([sorted(a).index(x) for x in a], float)
        rb = np.array([sorted(b).index(x) for x in b], float)
        rho = 1 - 6 * np.sum((ra - rb) ** 2) / (7 * (7 ** 2 - 1))  # no ties
        assert abs(rank_correlation(a, b) - rho) < 1e-12
    assert rank_correlation([1, 2, 3], [30, 20, 10]) == -1.0


import pytest  # noqa: E402

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig  # noqa: E402
from tf_todm.search.wer_predictor import WerPredictor, feature_names, fit_ridge, subnet_features  # noqa: E402

SPACE = SearchSpace((1, 2, 3), (8, 16, 24), (1, 2), (4, 8), (4, 8), (4, 8))


def test_subnet_features_by_hand():
    config = SubnetConfig(3, (24, 8, 24), (2, 2, 1), (4, 8, 4), 8, 4)
    names = feature_names(SPACE)
    row = subnet_features(config, SPACE)
    assert dict(zip(names, row)) == {
        "intercept": 1.0, "num_blocks=2": 0.0, "num_blocks=3": 1.0,
        "blocks with ff_dims=16": 0.0, "blocks with ff_dims=24": 2.0,
        "blocks with num_heads=2": 2.0, "blocks with conv_dims=8": 1.0,
        "predictor_dim=8": 1.0, "joiner_dim=8": 0.0}
    assert len(names) == len(row) == 9


def test_per_position_features_by_hand_and_their_sums_are_the_counts():
    config = SubnetConfig(2, (24, 16), (2, 1), (8, 8), 4, 8)
    names = feature_names(SPACE, per_position=True)
    row = dict(zip(names, subnet_features(config, SPACE, per_position=True)))
    assert len(names) == 1 + 2 + 3 * (2 + 1 + 1) + 2 == 17
    assert {k: v for k, v in row.items() if v} == {
        "intercept": 1.0, "num_blocks=2": 1.0, "block 0 ff_dims=24": 1.0, "block 1 ff_dims=16": 1.0,
        "block 0 num_heads=2": 1.0, "block 0 conv_dims=8": 1.0, "block 1 conv_dims=8": 1.0, "joiner_dim=8": 1.0}
    rng = np.random.default_rng(4)
    for config in (SPACE.sample(rng) for _ in range(30)):  # summing positions gives the count features
        counts = dict(zip(feature_names(SPACE), subnet_features(config, SPACE)))
        positions = dict(zip(names, subnet_features(config, SPACE, per_position=True)))
        for name, value in counts.items():
            if name.startswith("blocks with "):
                gene_choice = name[len("blocks with "):]
                assert value == sum(v for k, v in positions.items() if k.endswith(" " + gene_choice))
            else:
                assert positions[name] == value
    # a position-dependent surface: the predictor with position features recovers it, counts cannot
    configs = list({c.key(): c for c in (SPACE.sample(rng) for _ in range(120))}.values())
    wers = np.array([0.5 - 0.1 * (c.num_heads[0] == 2) + 0.05 * c.num_blocks for c in configs])
    by_position = WerPredictor(SPACE, l2=1e-9, per_position=True).fit(configs, wers)
    np.testing.assert_allclose(by_position.predict(configs), wers, atol=1e-6)
    by_count = WerPredictor(SPACE, l2=1e-9).fit(configs, wers)
    assert np.abs(by_count.predict(configs) - wers).max() > 0.02


def test_fit_ridge_against_least_squares_references():
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(20), rng.normal(size=(20, 4))])
    y = rng.normal(size=20)
    # l2 -> 0: ordinary least squares
    np.testing.assert_allclose(fit_ridge(x, y, 1e-12), np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-8)
    # l2 > 0: least squares on the data stacked with sqrt(l2) * I for the penalised columns only
    l2 = 2.5
    penalty_rows = np.sqrt(l2) * np.eye(5)[1:]
    reference = np.linalg.lstsq(np.vstack([x, penalty_rows]), np.concatenate([y, np.zeros(4)]), rcond=None)[0]
    np.testing.assert_allclose(fit_ridge(x, y, l2), reference, atol=1e-10)
    # the intercept is not penalised: shifting the targets shifts only the intercept
    shifted = fit_ridge(x, y + 7.0, l2)
    np.testing.assert_allclose(shifted[1:], fit_ridge(x, y, l2)[1:], atol=1e-10)
    assert shifted[0] == pytest.approx(fit_ridge(x, y, l2)[0] + 7.0)
    with pytest.raises(ValueError, match=r"features \[N, F\] and targets \[N\]"):
        fit_ridge(x, y[:3], 1.0)


def test_predictor_recovers_an_additive_surface_and_leave_one_out_refits():
    rng = np.random.default_rng(1)
    configs = list({c.key(): c for c in (SPACE.sample(rng) for _ in range(80))}.values())
    true = rng.normal(size=len(feature_names(SPACE)))
    wers = np.array([subnet_features(c, SPACE) @ true for c in configs])
    predictor = WerPredictor(SPACE, l2=1e-9).fit(configs, wers)
    unseen = [SPACE.sample(rng) for _ in range(10)]
    np.testing.assert_allclose(predictor.predict(unseen), [subnet_features(c, SPACE) @ true for c in unseen],
                               atol=1e-6)
    noisy = wers + rng.normal(scale=0.1, size=len(wers))
    loo = WerPredictor(SPACE, l2=0.5).leave_one_out(configs[:12], noisy[:12])
    for i in range(12):  # brute force: refit without subnet i
        rest = [j for j in range(12) if j != i]
        refit = WerPredictor(SPACE, l2=0.5).fit([configs[j] for j in rest], noisy[rest])
        assert loo[i] == pytest.approx(refit.predict([configs[i]])[0], abs=1e-10)


def test_predictor_errors():
    with pytest.raises(ValueError, match="l2 must be > 0"):
        WerPredictor(SPACE, l2=0.0)
    with pytest.raises(ValueError, match="predict before fit"):
        WerPredictor(SPACE).predict([SPACE.smallest()])
    with pytest.raises(ValueError, match="needs >= 2 evaluated subnets, got 1"):
        WerPredictor(SPACE).fit([SPACE.smallest()], [0.5])
