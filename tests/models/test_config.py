"""TransducerConfig: JSON round trip, strict keys, validation; default search space."""

import pytest

from tf_todm.models import ConfigError, TransducerConfig, count_params, search_space


def test_json_round_trip():
    config = TransducerConfig(vocab_size=123, chunk_size=8, left_context=16, causal_conv=True,
                              block_ff_dims=(5, 6, 7, 8, 9, 10))
    again = TransducerConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.block_ff_dims, tuple)


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown keys \\['modle_dim'\\]"):
        TransducerConfig.from_dict({"modle_dim": 3})


@pytest.mark.parametrize("changes, field", [
    ({"num_heads": 5}, "num_heads"),
    ({"model_dim": 12, "num_heads": 4}, "head_dim"),  # head_dim 3 is odd
    ({"predictor_type": "gru"}, "predictor_type"),
    ({"dropout": 1.0}, "dropout"),
    ({"block_conv_dims": (1, 2)}, "block_conv_dims"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"input_dim": 5}, "input_dim"),
])
def test_invalid_fields_are_named(changes, field):
    with pytest.raises(ConfigError, match=field):
        TransducerConfig(**changes)


def test_default_model_size_and_search_space():
    config = TransducerConfig()
    assert 3_000_000 < count_params(config) < 5_000_000
    space = search_space(config)
    assert space.num_blocks_choices == (2, 3, 4, 5, 6)
    assert space.ff_dim_choices == (192, 384, 576)
    assert space.num_heads_choices == (2, 4)
    assert space.conv_dim_choices == (72, 144)
    assert space.predictor_dim_choices == (128, 256)
    assert space.joiner_dim_choices == (160, 320)
    largest = space.largest()
    assert (largest.num_blocks, largest.ff_dims[0], largest.num_heads[0], largest.conv_dims[0],
            largest.predictor_dim, largest.joiner_dim) == (6, 576, 4, 144, 256, 320)
    assert search_space(config.replace(predictor_type="lstm")).predictor_dim_choices == (256,)
