"""Bucketed sizes for XLA-compiled loss pieces.

XLA compiles once per distinct input shape. Training batches have a different (batch, frames,
labels) shape almost every step, so the loss pieces pad each dynamic axis up to a *bucket size*
first: multiples of `min_step` up to `min_step * steps_per_octave`, then `steps_per_octave` evenly
spaced sizes per octave (..., 40, 48, 56, 64, 80, 96, 112, 128, 160, ...). Padding wastes less
than 1 / steps_per_octave of an axis, and a size range [1, N] maps to about
`steps_per_octave * log2(N / min_step)` buckets, so the number of compilations stays bounded.
"""

from __future__ import annotations

import math

import tensorflow as tf


def bucket_size_py(n: int, min_step: int = 8, steps_per_octave: int = 4) -> int:
    """Python-int bucket size (the reference for `bucket_size`): the smallest bucket >= n; 0 -> 0."""
    if n <= 0:
        return 0
    step = max(min_step, 2 ** (math.floor(math.log2(max(n - 1, 1))) - int(math.log2(steps_per_octave))))
    return -(-n // step) * step


def bucket_size(n, min_step: int = 8, steps_per_octave: int = 4):
    """int32 scalar tensor n >= 0 -> int32 scalar, the smallest bucket size >= n (0 -> 0).

    `steps_per_octave` must be a power of two.
    """
    n = tf.cast(n, tf.int32)
    m = tf.cast(tf.maximum(n - 1, 1), tf.float32)
    # floor(log2(m)) for an integer m >= 1: +0.5 keeps exact powers of two off the boundary.
    octave = tf.cast(tf.floor(tf.math.log(m + 0.5) / math.log(2.0)), tf.int32)
    step = tf.maximum(min_step, tf.bitwise.left_shift(
        1, tf.maximum(octave - int(math.log2(steps_per_octave)), 0)))
    return (n + step - 1) // step * step


def dynamic_axes(x) -> list[int]:
    """Axes of `x` whose static size is unknown (the ones worth bucketing)."""
    return [i for i, d in enumerate(x.shape) if d is None]


def pad_axes_to_buckets(x, axes, value=0):
    """Pads `x` at the end of each axis in `axes` to its bucket size with `value`."""
    if not axes:
        return x
    shape = tf.shape(x)
    paddings = [[0, bucket_size(shape[i]) - shape[i]] if i in axes else [0, 0] for i in range(x.shape.rank)]
    return tf.pad(x, paddings, constant_values=value)


def crop(x, shape):
    """x[:shape[0], :shape[1], ...]: undoes `pad_axes_to_buckets` (`shape` int32 [rank(x)])."""
    shape = tf.convert_to_tensor(shape, tf.int32)
    return tf.slice(x, tf.zeros_like(shape), shape)
