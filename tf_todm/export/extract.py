"""Extract a standalone subnet from the elastic supernet: sliced weights, no masks."""

from __future__ import annotations

import numpy as np

from tf_todm.models.batch_norm_calibration import (has_batch_norm, preserved_batch_norm_statistics,
                                                    recalibrate_batch_norm)
from tf_todm.models.elastic import encode_subnet, validate_subnet
from tf_todm.models.elastic_space import SubnetConfig
from tf_todm.models.transducer import Transducer


def subnet_model_config(config, subnet_config: SubnetConfig):
    """The `TransducerConfig` of the extracted subnet (per-block widths, fixed head_dim)."""
    validate_subnet(config, subnet_config)
    return config.replace(
        num_blocks=subnet_config.num_blocks, head_dim=config.resolved_head_dim,
        block_ff_dims=tuple(subnet_config.ff_dims), block_num_heads=tuple(subnet_config.num_heads),
        block_conv_dims=tuple(subnet_config.conv_dims), predictor_dim=subnet_config.predictor_dim,
        joiner_dim=subnet_config.joiner_dim)


def _assign(variable, value):
    value = np.asarray(value)
    if tuple(variable.shape) != value.shape:
        raise AssertionError(f"extract: {variable.path} expects {tuple(variable.shape)}, got {value.shape}")
    variable.assign(value)


def _copy_all(dst_layer, src_layer):
    for dst, src in zip(dst_layer.weights, src_layer.weights):
        _assign(dst, src.numpy())


def _copy_dense(dst, src, rows=None, cols=None):
    kernel = src.kernel.numpy()
    bias = src.bias.numpy()
    if rows is not None:
        kernel = kernel[rows]
    if cols is not None:
        kernel, bias = kernel[:, cols], bias[cols]
    _assign(dst.kernel, kernel)
    _assign(dst.bias, bias)


def _copy_block(dst, src, ff: int, heads: int, conv: int, head_dim: int):
    for name in ("ff1", "ff2"):
        d, s = getattr(dst, name), getattr(src, name)
        _copy_all(d.norm, s.norm)
        _copy_dense(d.inner, s.inner, cols=slice(0, ff))
        _copy_dense(d.outer, s.outer, rows=slice(0, ff))
    inner = slice(0, heads * head_dim)
    _copy_all(dst.attention.norm, src.attention.norm)
    for name in ("query", "key", "value"):
        _copy_dense(getattr(dst.attention, name), getattr(src.attention, name), cols=inner)
    _copy_dense(dst.attention.output_dense, src.attention.output_dense, rows=inner)
    dc, sc = dst.conv, src.conv
    _copy_all(dc.norm, sc.norm)
    full = sc.conv_dim
    glu_cols = np.concatenate([np.arange(conv), full + np.arange(conv)])
    _copy_dense(dc.pointwise_in, sc.pointwise_in, cols=glu_cols)
    _assign(dc.depthwise.kernel, sc.depthwise.kernel.numpy()[:, :conv])
    _assign(dc.depthwise.bias, sc.depthwise.bias.numpy()[:conv])
    _assign(dc.conv_norm_gamma, sc.conv_norm_gamma.numpy()[:conv])
    _assign(dc.conv_norm_beta, sc.conv_norm_beta.numpy()[:conv])
    if sc.norm_type == "batch":
        _assign(dc.conv_norm_moving_mean, sc.conv_norm_moving_mean.numpy()[:conv])
        _assign(dc.conv_norm_moving_variance, sc.conv_norm_moving_variance.numpy()[:conv])
    _copy_dense(dc.pointwise_out, sc.pointwise_out, rows=slice(0, conv))
    _copy_all(dst.final_norm, src.final_norm)


def extract_subnet(supernet: Transducer, subnet_config: SubnetConfig, calibration_batches=None) -> Transducer:
    """A plain `Transducer` whose outputs equal `supernet` run with `encode_subnet(subnet_config)`.

    With `calibration_batches` (training batches, `recalibrate_batch_norm`) a supernet with
    conv-module BatchNorm first re-estimates the statistics for this subnet; the supernet's own
    statistics are restored afterwards. Without them the current statistics are sliced as they are.
    """
    if calibration_batches is not None and has_batch_norm(supernet):
        with preserved_batch_norm_statistics(supernet):
            recalibrate_batch_norm(supernet, calibration_batches, encode_subnet(supernet.config, subnet_config))
            return extract_subnet(supernet, subnet_config)
    config = subnet_model_config(supernet.config, subnet_config)
    model = Transducer(config, name=supernet.name)
    _copy_all(model.encoder.subsampling, supernet.encoder.subsampling)
    for i in range(subnet_config.num_blocks):
        _copy_block(model.encoder.blocks[i], supernet.encoder.blocks[i], subnet_config.ff_dims[i],
                    subnet_config.num_heads[i], subnet_config.conv_dims[i], config.resolved_head_dim)
    p, j = subnet_config.predictor_dim, subnet_config.joiner_dim
    if config.predictor_type == "lstm":
        _copy_all(model.predictor, supernet.predictor)
    else:
        _assign(model.predictor.embedding.embeddings, supernet.predictor.embedding.embeddings.numpy()[:, :p])
        _assign(model.predictor.context_conv.kernel, supernet.predictor.context_conv.kernel.numpy()[:, :p])
    _copy_dense(model.joiner.encoder_proj, supernet.joiner.encoder_proj, cols=slice(0, j))
    _copy_dense(model.joiner.predictor_proj, supernet.joiner.predictor_proj, rows=slice(0, p), cols=slice(0, j))
    _copy_dense(model.joiner.output_dense, supernet.joiner.output_dense, rows=slice(0, j))
    _copy_dense(model.simple_am, supernet.simple_am)
    _copy_dense(model.simple_lm, supernet.simple_lm, rows=slice(0, p))
    if model.ctc_head is not None:
        _copy_dense(model.ctc_head, supernet.ctc_head)
    return model
