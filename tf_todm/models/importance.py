"""Importance ordering: permute elastic units so that every prefix keeps the most important ones.

Importance of a unit = L1 norm of its outgoing weights (the rows it feeds in the next layer).
Permutations are applied consistently to incoming and outgoing weights, so the FULL model's
outputs are unchanged.
"""

from __future__ import annotations

import numpy as np


def _order(outgoing: np.ndarray) -> np.ndarray:
    """Indices of units sorted by decreasing L1 norm of their outgoing rows (stable)."""
    norms = np.abs(outgoing.reshape(outgoing.shape[0], -1)).sum(axis=1)
    return np.argsort(-norms, kind="stable")


def _permute_cols(dense, order):
    dense.kernel.assign(dense.kernel.numpy()[:, order])
    dense.bias.assign(dense.bias.numpy()[order])


def _permute_rows(dense, order):
    dense.kernel.assign(dense.kernel.numpy()[order])


def _sort_feed_forward(ff):
    order = _order(ff.outer.kernel.numpy())
    _permute_cols(ff.inner, order)
    _permute_rows(ff.outer, order)


def _sort_heads(attention):
    h, d = attention.num_heads, attention.head_dim
    out = attention.output_dense.kernel.numpy()
    head_order = _order(out.reshape(h, d * out.shape[1]))
    order = (head_order[:, None] * d + np.arange(d)[None, :]).reshape(-1)
    for dense in (attention.query, attention.key, attention.value):
        _permute_cols(dense, order)
    _permute_rows(attention.output_dense, order)


def _sort_conv(conv):
    c = conv.conv_dim
    order = _order(conv.pointwise_out.kernel.numpy())
    _permute_cols(conv.pointwise_in, np.concatenate([order, c + order]))
    conv.depthwise.kernel.assign(conv.depthwise.kernel.numpy()[:, order])
    conv.depthwise.bias.assign(conv.depthwise.bias.numpy()[order])
    conv.conv_norm_gamma.assign(conv.conv_norm_gamma.numpy()[order])
    conv.conv_norm_beta.assign(conv.conv_norm_beta.numpy()[order])
    if conv.norm_type == "batch":
        conv.conv_norm_moving_mean.assign(conv.conv_norm_moving_mean.numpy()[order])
        conv.conv_norm_moving_variance.assign(conv.conv_norm_moving_variance.numpy()[order])
    _permute_rows(conv.pointwise_out, order)


def sort_by_importance(model) -> None:
    """In place: FF hidden units, heads, conv channels per block, stateless-predictor channels and
    joiner units of a `Transducer`, most important first. (The LSTM predictor is not elastic and
    is left as is.)"""
    for block in model.encoder.blocks:
        _sort_feed_forward(block.ff1)
        _sort_feed_forward(block.ff2)
        _sort_heads(block.attention)
        _sort_conv(block.conv)
    joiner = model.joiner
    order = _order(joiner.output_dense.kernel.numpy())
    _permute_cols(joiner.encoder_proj, order)
    _permute_cols(joiner.predictor_proj, order)
    _permute_rows(joiner.output_dense, order)
    if model.config.predictor_type == "stateless":
        outgoing = np.concatenate([joiner.predictor_proj.kernel.numpy(), model.simple_lm.kernel.numpy()], axis=1)
        order = _order(outgoing)
        predictor = model.predictor
        predictor.embedding.embeddings.assign(predictor.embedding.embeddings.numpy()[:, order])
        predictor.context_conv.kernel.assign(predictor.context_conv.kernel.numpy()[:, order])
        _permute_rows(joiner.predictor_proj, order)
        _permute_rows(model.simple_lm, order)
