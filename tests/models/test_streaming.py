"""Chunked streaming with explicit state == full-sequence encoder with the chunked attention mask."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer
from tf_todm.models.testing import F, tiny_config, tiny_space


@pytest.mark.parametrize("chunk_size, left_context, subsampling", [(2, 3, "conv2d"), (3, 0, "conv2d"),
                                                                   (1, 4, "conv2d"), (2, 3, "stack")])
def test_stream_equals_full_sequence(chunk_size, left_context, subsampling):
    keras.utils.set_random_seed(chunk_size)  # Keras 3 initialisers ignore tf.random.set_seed (test-order state)
    config = tiny_config(chunk_size=chunk_size, left_context=left_context, causal_conv=True,
                         subsampling=subsampling)
    model = extract_subnet(Transducer(config), tiny_space(config).sample(np.random.default_rng(chunk_size)))
    num_chunks, batch = 5, 2
    frames = 4 * chunk_size * num_chunks
    features = np.random.default_rng(0).normal(size=(batch, frames, F)).astype(np.float32)
    full, _ = model.encode(features, np.full([batch], frames, np.int32))

    encoder = model.encoder
    state = encoder.init_state(batch)
    outputs = []
    step = tf.function(encoder.stream_step)
    for c in range(num_chunks):
        out, state = step(features[:, 4 * chunk_size * c: 4 * chunk_size * (c + 1)], state)
        assert out.shape == (batch, chunk_size, config.model_dim)
        outputs.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full.numpy(), atol=1e-5)
    assert int(state[0]) == chunk_size * num_chunks


def test_streaming_needs_causal_config():
    model = Transducer(tiny_config(chunk_size=2, left_context=3, causal_conv=False))
    with pytest.raises(ValueError, match="causal_conv"):
        model.encoder.init_state(1)


def test_chunk_mask_limits_the_past():
    """Full-sequence outputs of the first chunk do not depend on later chunks (chunked-causal)."""
    config = tiny_config(chunk_size=2, left_context=2, causal_conv=True)
    model = Transducer(config)
    features = np.random.default_rng(1).normal(size=(1, 24, F)).astype(np.float32)
    changed = features.copy()
    changed[:, 8:] = np.random.default_rng(2).normal(size=changed[:, 8:].shape)
    a, _ = model.encode(features, [24])
    b, _ = model.encode(changed, [24])
    np.testing.assert_allclose(a[:, :2].numpy(), b[:, :2].numpy(), atol=1e-6)
    assert not np.allclose(a[:, 2:].numpy(), b[:, 2:].numpy())
