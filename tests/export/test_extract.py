"""extract_subnet: sliced standalone model equals the supernet run with the subnet; `.keras` round trip."""

import json

import keras
import numpy as np
import pytest

from tf_todm.export.extract import extract_subnet, subnet_model_config
from tf_todm.models import SubnetConfig, SubnetError, Transducer, encode_subnet
from tf_todm.models.testing import tiny_batch, tiny_config, tiny_space


@pytest.fixture(scope="module")
def supernet():
    keras.utils.set_random_seed(11)
    return Transducer(tiny_config())


def test_extracted_model_saves_loads_and_matches_supernet(supernet, tmp_path):
    subnet_config = SubnetConfig(2, (3, 10), (1, 3), (5, 10), 3, 4)
    model = extract_subnet(supernet, subnet_config)
    assert model.config.num_blocks == 2 and model.config.block_ff_dims == (3, 10)
    assert model.config.predictor_dim == 3 and model.config.joiner_dim == 4
    assert model.encoder.blocks[1].attention.query.kernel.shape == (12, 3 * 4)
    path = tmp_path / "subnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.config == model.config
    json.loads(loaded.config.to_json())

    features, lengths, labels = tiny_batch(3)
    subnet = encode_subnet(supernet.config, subnet_config)
    enc, enc_lengths = supernet.encode(features, lengths, subnet=subnet)
    logits = supernet.joiner(enc, supernet.predict(labels, subnet=subnet), subnet)
    enc2, enc_lengths2 = loaded.encode(features, lengths)
    logits2 = loaded.joiner(enc2, loaded.predict(labels))
    np.testing.assert_allclose(enc2.numpy(), enc.numpy(), atol=1e-5)
    np.testing.assert_array_equal(enc_lengths2.numpy(), enc_lengths.numpy())
    np.testing.assert_allclose(logits2.numpy(), logits.numpy(), atol=1e-5)


def test_extracting_the_largest_subnet_copies_the_model(supernet):
    largest = tiny_space(supernet.config).largest()
    model = extract_subnet(supernet, largest)
    assert model.count_params() == supernet.count_params()
    for a, b in zip(model.weights, supernet.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("subnet_config, field", [
    (SubnetConfig(4, (3,) * 4, (1,) * 4, (5,) * 4, 3, 4), "num_blocks"),
    (SubnetConfig(1, (11,), (1,), (5,), 3, 4), "ff_dims"),
    (SubnetConfig(1, (3,), (4,), (5,), 3, 4), "num_heads"),
    (SubnetConfig(1, (3,), (1,), (5,), 9, 4), "predictor_dim"),
    (SubnetConfig(1, (3,), (1,), (5,), 3, 10), "joiner_dim"),
])
def test_subnet_larger_than_supernet_is_rejected(supernet, subnet_config, field):
    with pytest.raises(SubnetError, match=field):
        subnet_model_config(supernet.config, subnet_config)
