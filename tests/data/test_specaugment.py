"""SpecAugment: identity at inference; masks are bands, inside lengths, within the configured sizes."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.data.specaugment import SpecAugment

B, T, F = 3, 211, 80


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    feats = rng.normal(5.0, 1.0, (B, T, F)).astype(np.float32)  # no natural zeros
    lengths = np.array([211, 150, 37], np.int32)
    for i, n in enumerate(lengths):
        feats[i, n:] = 0.0
    return feats, lengths


def test_identity_when_not_training(batch):
    feats, lengths = batch
    layer = SpecAugment(seed=1)
    out, out_lengths = layer(feats, lengths, training=False)
    np.testing.assert_array_equal(out.numpy(), feats)
    np.testing.assert_array_equal(out_lengths.numpy(), lengths)
    np.testing.assert_array_equal(layer(feats).numpy(), feats)


def check_bands(changed, length, layer):
    """`changed` [T, F]: must be (time rows) ∪ (frequency columns) restricted to the valid frames."""
    assert not changed[length:].any()
    valid = changed[:length]
    rows = valid.all(axis=1)
    cols = valid.all(axis=0)
    np.testing.assert_array_equal(valid, rows[:, None] | cols[None, :])
    # frequency masks: at most num_freq_masks runs of width <= max_freq_width
    assert cols.sum() <= layer.num_freq_masks * layer.max_freq_width
    count = min(layer.max_time_masks, int(np.floor(layer.time_mask_multiplicity * length)))
    width = int(np.floor(layer.max_time_ratio * length))
    if not cols.all():
        assert rows.sum() <= count * width
    return rows.sum(), cols.sum()


def test_masks_are_bands_within_bounds(batch):
    feats, lengths = batch
    layer = SpecAugment(mask_value=0.0)
    time_total, freq_total = 0, 0
    for s in range(20):
        out = layer(feats, lengths, training=True, seed=tf.constant([s, 7]))[0].numpy()
        changed = out != feats
        assert np.all(out[changed] == 0.0)
        for i in range(B):
            r, c = check_bands(changed[i], lengths[i], layer)
            time_total += r
            freq_total += c
    assert time_total > 0 and freq_total > 0  # masks actually happen


def test_short_utterance_gets_no_time_mask():
    layer = SpecAugment(num_freq_masks=0)
    feats = np.ones((2, 23, 13), np.float32)
    out = layer(feats, np.array([23, 20], np.int32), training=True, seed=tf.constant([1, 2]))[0]
    np.testing.assert_array_equal(out.numpy(), feats)  # floor(0.04 * 23) = 0 time masks


def test_seeded_and_mask_value(batch):
    feats, lengths = batch
    layer = SpecAugment(mask_value=-1.5)
    a = layer(feats, lengths, training=True, seed=tf.constant([3, 4]))[0].numpy()
    b = layer(feats, lengths, training=True, seed=tf.constant([3, 4]))[0].numpy()
    c = layer(feats, lengths, training=True, seed=tf.constant([3, 5]))[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a[a != feats])) <= {-1.5}
    g1 = SpecAugment(seed=11)(feats, lengths, training=True)[0].numpy()
    g2 = SpecAugment(seed=11)(feats, lengths, training=True)[0].numpy()
    np.testing.assert_array_equal(g1, g2)


def test_in_tf_function_and_config_round_trip(batch):
    feats, lengths = batch
    layer = SpecAugment(num_freq_masks=1, max_freq_width=5, seed=3)
    fn = tf.function(lambda x, n, s: layer(x, n, training=True, seed=s)[0],
                     input_signature=[tf.TensorSpec([None, None, F]), tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([2], tf.int32)])
    out = fn(feats, lengths, tf.constant([1, 1])).numpy()
    for i in range(B):
        check_bands(out[i] != feats[i], lengths[i], layer)
    config = layer.get_config()
    assert SpecAugment.from_config(json.loads(json.dumps(config))).get_config() == config
