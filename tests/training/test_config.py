"""TrainConfig: strict overrides, typed parsing, JSON round trip."""
import json

import pytest

from tf_todm.training.config import ConfigError, TrainConfig, parse_overrides


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="'kd_wieght'"):
        TrainConfig().replace(kd_wieght=1.0)
    with pytest.raises(ConfigError, match="'nope'"):
        TrainConfig.from_dict({"nope": 1})


def test_overrides_are_parsed_by_field_type():
    c = parse_overrides(TrainConfig(), ["num_epochs=3", "base_lr=0.01", "supernet=false",
                                        "loss=exact", "train_manifest=a/b.jsonl"])
    assert (c.num_epochs, c.base_lr, c.supernet, c.loss, c.train_manifest) == (
        3, 0.01, False, "exact", "a/b.jsonl")
    assert isinstance(c.base_lr, float) and isinstance(c.num_epochs, int)
    with pytest.raises(ConfigError, match="num_epochs"):
        parse_overrides(TrainConfig(), ["num_epochs=two"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(TrainConfig(), ["num_epochs"])


@pytest.mark.parametrize("bad", [dict(loss="fast"), dict(strategy="tpu"), dict(num_epochs=0),
                                 dict(alpha_min=2.0), dict(dropout_min=0.3, dropout_max=0.1),
                                 dict(num_epochs=1.5), dict(supernet=1), dict(iw_clip=0.0),
                                 dict(lr_time_decay=0.2),  # no max_train_minutes to decay over
                                 dict(lr_time_decay=1.5, max_train_minutes=45)])
def test_bad_values_raise(bad):
    with pytest.raises(ConfigError, match=list(bad)[0]):
        TrainConfig(**bad)


def test_json_round_trip_and_frozen():
    c = TrainConfig(num_epochs=7, seed=11, loss="exact", base_lr=0.02)
    again = TrainConfig.from_json(c.to_json())
    assert again == c and json.loads(c.to_json())["seed"] == 11
    assert TrainConfig(base_lr=1).base_lr == 1.0 and isinstance(TrainConfig(base_lr=1).base_lr, float)
    with pytest.raises(Exception):
        c.seed = 3  # frozen
