"""Per-subnet re-estimate of the conv modules' BatchNorm statistics (supernets with conv_norm="batch").

While the supernet trains, every sampled subnet updates the moving statistics of the channels it
has, so they end up a blend over subnets, right for none of them (a channel's input distribution
depends on the widths and depth upstream). Before a subnet is evaluated or extracted its statistics
are re-estimated (as in OFA / BigNAS): the encoder runs as that subnet in training mode (batch
statistics, no dropout, no layer-drop) over a few batches, each BatchNorm's per-batch moments over
valid frames are pooled exactly (frame-weighted mean; total variance = mean within-batch variance +
variance of the batch means), and written into the active channels only.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_todm.models.elastic import prefix_mask


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


def pool_moments(moments: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Pools per-batch (mean [C], variance [C], frames) into the moments of all frames together
    (float64): mean = sum(n_i m_i) / N, variance = sum(n_i (v_i + (m_i - mean)^2)) / N."""
    counts = np.array([float(n) for _, _, n in moments], np.float64)
    means = np.stack([np.asarray(m, np.float64) for m, _, _ in moments])
    variances = np.stack([np.asarray(v, np.float64) for _, v, _ in moments])
    total = counts.sum()
    mean = (counts[:, None] * means).sum(0) / total
    variance = (counts[:, None] * (variances + (means - mean) ** 2)).sum(0) / total
    return mean, variance


def recalibrate_batch_norm(model, batches: Iterable[dict], subnet: Optional[dict] = None) -> int:
    """Re-estimates the conv-module BatchNorm statistics of `model` run as `subnet`. Eager.

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
    for _, module in modules:
        module.moment_sink = []
    try:
        seen = 0
        for batch in batches:
            model.encode(batch["features"], batch["feature_lengths"], subnet=subnet, training=True)
            seen += 1
        if not seen:
            raise ValueError("recalibrate_batch_norm: `batches` yielded no batch")
        updated = 0
        for index, module in modules:
            if not module.moment_sink:
                continue
            mean, variance = pool_moments(module.moment_sink)
            mask = np.ones(module.conv_dim)
            if subnet is not None:
                mask = prefix_mask(subnet["conv_dim"][index], module.conv_dim).numpy().astype(np.float64)
            old_mean = module.conv_norm_moving_mean.numpy()
            old_variance = module.conv_norm_moving_variance.numpy()
            module.conv_norm_moving_mean.assign((mask * mean + (1 - mask) * old_mean).astype(np.float32))
            module.conv_norm_moving_variance.assign((mask * variance + (1 - mask) * old_variance).astype(np.float32))
            updated += 1
        return updated
    finally:
        for _, module in modules:
            module.moment_sink = None
