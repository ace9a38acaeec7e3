"""SubnetConfig / SearchSpace: validity, JSON round trips, operators always stay in the space."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig

SPACE = SearchSpace(
    num_blocks_choices=(2, 3, 5),
    ff_dim_choices=(16, 32, 48),
    num_heads_choices=(1, 2),
    conv_dim_choices=(8, 12),
    predictor_dim_choices=(10, 20),
    joiner_dim_choices=(7, 14),
)


def test_largest_and_smallest_are_extremes():
    largest, smallest = SPACE.largest(), SPACE.smallest()
    assert largest.num_blocks == 5 and set(largest.ff_dims) == {48} and largest.joiner_dim == 14
    assert smallest.num_blocks == 2 and set(smallest.conv_dims) == {8} and smallest.predictor_dim == 10
    SPACE.validate(largest)
    SPACE.validate(smallest)


def test_config_rejects_mismatched_block_lists():
    with pytest.raises(ValueError, match="ff_dims has 1 entries, expected num_blocks=2"):
        SubnetConfig(2, (16,), (1, 1), (8, 8), 10, 7)


def test_validate_names_the_bad_field():
    bad = SubnetConfig(2, (16, 99), (1, 1), (8, 8), 10, 7)
    with pytest.raises(ValueError, match=r"ff_dims=\[16, 99\]: \[99\] not in choices"):
        SPACE.validate(bad)
    assert not SPACE.contains(bad)


def test_from_dict_is_strict():
    d = SPACE.largest().to_dict()
    d["typo"] = 3
    with pytest.raises(ValueError, match="unknown keys \\['typo'\\]"):
        SubnetConfig.from_dict(d)


def test_key_is_stable_and_distinguishes_configs():
    a, b = SPACE.largest(), SPACE.smallest()
    assert a.key() == SubnetConfig.from_json(a.to_json()).key()
    assert a.key() != b.key()


def test_sample_is_seeded():
    draws = [SPACE.sample(np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    many = {SPACE.sample(np.random.default_rng(s)).key() for s in range(50)}
    assert len(many) > 40


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_operators_stay_in_space_and_round_trip(seed):
    rng = np.random.default_rng(seed)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    for child in (SPACE.mutate(a, rng, prob=0.5), SPACE.crossover(a, b, rng)):
        SPACE.validate(child)
        assert SubnetConfig.from_json(json.loads(json.dumps(child.to_json()))) == child
    assert SearchSpace.from_dict(json.loads(json.dumps(SPACE.to_dict()))) == SPACE


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_operators_fuzz_500(seed, prob):
    rng = np.random.default_rng(seed)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    SPACE.validate(SPACE.mutate(a, rng, prob=prob))
    SPACE.validate(SPACE.crossover(a, b, rng))
