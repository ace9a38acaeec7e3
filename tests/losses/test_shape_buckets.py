"""Bucket sizes for the XLA loss path: tensor version == Python reference == brute-force bucket list."""
import math

import numpy as np
import tensorflow as tf

from tf_todm.losses.shape_buckets import bucket_size, bucket_size_py, crop, pad_axes_to_buckets


def bucket_list(limit, min_step=8, steps_per_octave=4):
    """Every bucket size up to `limit`, enumerated directly: multiples of min_step up to
    min_step * steps_per_octave, then steps_per_octave evenly spaced sizes per octave."""
    sizes = list(range(min_step, min_step * steps_per_octave + 1, min_step))
    top = min_step * steps_per_octave
    while sizes[-1] < limit:
        sizes += [top + top * j // steps_per_octave for j in range(1, steps_per_octave + 1)]
        top *= 2
    return sizes


def test_bucket_size_is_the_smallest_listed_size_at_least_n():
    sizes = bucket_list(5000)
    ns = np.arange(0, 4100)
    got = tf.map_fn(bucket_size, tf.constant(ns, tf.int32)).numpy()
    for n, g in zip(ns, got):
        expected = 0 if n == 0 else min(s for s in sizes if s >= n)
        assert g == expected == bucket_size_py(int(n)), n


def test_padding_waste_and_bucket_count_are_bounded():
    ns = np.arange(1, 1025)
    padded = np.array([bucket_size_py(int(n)) for n in ns])
    assert np.all(padded >= ns)
    assert np.all(padded[ns > 32] <= np.ceil(ns[ns > 32] * 1.25))
    assert len(set(padded)) <= 4 * math.log2(1024 / 8) + 4


def test_pad_then_crop_round_trip():
    x = tf.reshape(tf.range(3 * 9 * 2, dtype=tf.float32), [3, 9, 2])
    padded = pad_axes_to_buckets(x, [0, 1], value=-1.0)
    assert padded.shape == (8, 16, 2)
    assert np.all(padded.numpy()[3:] == -1.0) and np.all(padded.numpy()[:, 9:] == -1.0)
    np.testing.assert_array_equal(crop(padded, tf.shape(x)).numpy(), x.numpy())
    assert pad_axes_to_buckets(x, []) is x
