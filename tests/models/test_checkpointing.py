"""tf.train.Checkpoint must carry EVERY weight of a Transducer (Keras 3 lists are invisible to it)."""
import os

import numpy as np
import tensorflow as tf

from tf_todm.models.testing import tiny_batch, tiny_config
from tf_todm.models.transducer import Transducer


def _saved_variable_names(path):
    return [n for n, _ in tf.train.list_variables(path)
            if "OBJECT_CONFIG" not in n and not n.startswith("_CHECKPOINTABLE")]


import pytest


@pytest.mark.parametrize("changes", [{}, {"conv_norm": "batch"}])
def test_checkpoint_holds_every_weight_and_restores_outputs(tmp_path, changes):
    config = tiny_config(**changes)
    source = Transducer(config)
    for block in source.encoder.blocks:  # non-default values, so a missed variable shows
        for variable in block.conv.non_trainable_variables:
            variable.assign(np.full(variable.shape, 1.7, np.float32))
    path = tf.train.Checkpoint(model=source).save(os.path.join(tmp_path, "ckpt"))
    assert len([n for n in _saved_variable_names(path) if n.startswith("model/")]) == len(source.weights)

    target = Transducer(config)
    tf.train.Checkpoint(model=target).restore(path).assert_consumed()
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    features, lengths, _ = tiny_batch()
    enc_a, _ = source.encode(features, lengths)
    enc_b, _ = target.encode(features, lengths)
    np.testing.assert_array_equal(enc_a.numpy(), enc_b.numpy())
