"""Per-subnet re-estimate of the conv modules' BatchNorm statistics (supernets with conv_norm="batch").

While the supernet trains, every sampled subnet updates the moving statistics of the channels it
has, so they end up a blend over subnets, right for none of them (a channel's input distribution
depends on the widths and depth upstream). Before a subnet is evaluated or extracted its statistics
are re-estimated (as in OFA / BigNAS): the encoder runs as that subnet in training mode (batch
statistics, no dropout, no layer-drop) over a few batches, each BatchNorm's per-batch moments over
valid frames are pooled exactly (frame-weighted mean; total variance = mean within-batch variance +
variance of the batch means), and written into the active channels only.

The encoder runs as one graph function per model (traced once, reused for every subnet and batch
shape): the moments are pooled in float64 variables (`MomentAccumulator`) updated inside the graph,
because the per-block `tf.cond` keeps tensors from leaving it.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf

from tf_todm.models.elastic import prefix_mask
from tf_todm.models.per_model import per_model


def batch_norm_modules(model) -> list:
    """(block index, `ConvModule`) of every encoder block whose conv module has norm="batch"."""
    return [(i, block.conv) for i, block in enumerate(model.encoder.blocks) if block.conv.norm_type == "batch"]


def has_batch_norm(model) -> bool:
    return bool(batch_norm_modules(model))


def calibration_batches(utterances, tokenizer, batch_size: int = 16, num_batches: int = 8) -> list[dict]:
    """The first `num_batches * batch_size` (training) utterances as `{"features", "feature_lengths"}`
    batches in manifest order, without augmentation: what `recalibrate_batch_norm` re-estimates from."""
    from tf_todm.data.pipeline import make_dataset
    dataset = make_dataset(list(utterances)[: num_batches * batch_size], tokenizer, batch_size=batch_size,
                           training=False, specaugment=False)
    return [{k: batch[k] for k in ("features", "feature_lengths")} for batch in dataset]


@contextlib.contextmanager
def preserved_batch_norm_statistics(model):
    """Restores every conv-module BatchNorm's moving statistics on exit (per-subnet evaluation
    inside training must not leave one subnet's statistics behind in the supernet)."""
    saved = [(m, m.conv_norm_moving_mean.numpy(), m.conv_norm_moving_variance.numpy())
             for _, m in batch_norm_modules(model)]
    try:
        yield
    finally:
        for module, mean, variance in saved:
            module.conv_norm_moving_mean.assign(mean)
            module.conv_norm_moving_variance.assign(variance)


class MomentAccumulator:
    """Pooled moments of one BatchNorm's input over batches, in float64 `tf.Variable`s so that the
    update can run inside a graph (and inside a `tf.cond` branch).

    `add(mean [C], variance [C], count)` merges one batch's moments exactly (the parallel update of
    Chan et al.: the moments of all frames added, as if they had come in one batch); `moments()` returns
    (mean [C], variance [C], frames) as float64 NumPy.
    """

    def __init__(self, channels: int):
        with tf.init_scope():
            self.count = tf.Variable(0.0, dtype=tf.float64, trainable=False)
            self.mean = tf.Variable(tf.zeros([channels], tf.float64), trainable=False)
            self.m2 = tf.Variable(tf.zeros([channels], tf.float64), trainable=False)

    def reset(self) -> None:
        self.count.assign(0.0)
        self.mean.assign(tf.zeros_like(self.mean))
        self.m2.assign(tf.zeros_like(self.m2))

    def add(self, mean, variance, count) -> None:
        n = tf.cast(count, tf.float64)
        old_count, old_mean = self.count.read_value(), self.mean.read_value()
        total = old_count + n
        delta = tf.cast(mean, tf.float64) - old_mean
        share = tf.math.divide_no_nan(n, total)
        self.m2.assign_add(n * tf.cast(variance, tf.float64) + delta * delta * old_count * share)
        self.mean.assign(old_mean + delta * share)
        self.count.assign(total)

    def moments(self) -> tuple[np.ndarray, np.ndarray, float]:
        count = float(self.count.numpy())
        return self.mean.numpy(), self.m2.numpy() / max(count, 1.0), count


@per_model
def _collector(model):
    """(graph function running the model's encoder in training mode, {block index: MomentAccumulator})."""
    sinks = {index: MomentAccumulator(module.conv_dim) for index, module in batch_norm_modules(model)}

    def run(features, feature_lengths, subnet):
        model.encode(features, feature_lengths, subnet=subnet, training=True)
        return tf.constant(0)

    return tf.function(run, reduce_retracing=True, autograph=False), sinks


def recalibrate_batch_norm(model, batches: Iterable[dict], subnet: Optional[dict] = None) -> int:
    """Re-estimates the conv-module BatchNorm statistics of `model` run as `subnet`.

    Args:
      model: a `Transducer` (supernet or plain model).
      batches: iterable of `{"features" [B, T, F], "feature_lengths" [B], ...}` (training data).
      subnet: the tensor dict of `encode_subnet` (None: the plain model). Its dropout and
        layer-drop rates are overridden with 0.
    Returns the number of BatchNorm layers re-estimated: inactive blocks are skipped and keep their
    statistics, as do channels beyond the subnet's width. 0 (and nothing run) if the model has none.
    """
    modules = batch_norm_modules(model)
    if not modules:
        return 0
    if subnet is not None:
        subnet = dict(subnet, dropout_rate=tf.constant(0.0), layer_drop_rate=tf.constant(0.0))
    run, sinks = _collector(model)
    for index, module in modules:
        sinks[index].reset()
        module.moment_sink = sinks[index]  # read while `run` traces; the graph keeps the accumulator
    try:
        seen = 0
        for batch in batches:
            run(tf.convert_to_tensor(batch["features"]), tf.convert_to_tensor(batch["feature_lengths"]), subnet)
            seen += 1
    finally:
        for _, module in modules:
            module.moment_sink = None
    if not seen:
        raise ValueError("recalibrate_batch_norm: `batches` yielded no batch")
    updated = 0
    for index, module in modules:
        mean, variance, count = sinks[index].moments()
        if count == 0:
            continue
        mask = np.ones(module.conv_dim)
        if subnet is not None:
            mask = prefix_mask(subnet["conv_dim"][index], module.conv_dim).numpy().astype(np.float64)
        old_mean = module.conv_norm_moving_mean.numpy()
        old_variance = module.conv_norm_moving_variance.numpy()
        module.conv_norm_moving_mean.assign((mask * mean + (1 - mask) * old_mean).astype(np.float32))
        module.conv_norm_moving_variance.assign((mask * variance + (1 - mask) * old_variance).astype(np.float32))
        updated += 1
    return updated
