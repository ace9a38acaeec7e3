"""Parameter count of a subnet by arithmetic (no model built); equals the extracted model's."""

from __future__ import annotations

from typing import Optional

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SubnetConfig


def _layer_norm(d: int) -> int:
    return 2 * d


def _dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def block_params(model_dim: int, ff_dim: int, num_heads: int, head_dim: int, conv_dim: int,
                 kernel_size: int, conv_norm: str = "layer") -> int:
    """Parameters of one Conformer block (BatchNorm's moving mean/variance count: they ship)."""
    d, inner = model_dim, num_heads * head_dim
    ff = _layer_norm(d) + _dense(d, ff_dim) + _dense(ff_dim, d)
    attention = _layer_norm(d) + 3 * _dense(d, inner) + _dense(inner, d)
    conv = (_layer_norm(d) + _dense(d, 2 * conv_dim) + kernel_size * conv_dim + conv_dim
            + (4 if conv_norm == "batch" else 2) * conv_dim + _dense(conv_dim, d))
    return 2 * ff + attention + conv + _layer_norm(d)


def count_params(config: TransducerConfig, subnet_config: Optional[SubnetConfig] = None) -> int:
    """Parameters of `extract_subnet(Transducer(config), subnet_config)` (`None`: the full model),
    simple heads and CTC head included."""
    if subnet_config is None:
        dims = [config.block_dims(i) for i in range(config.num_blocks)]
        predictor_dim, joiner_dim = config.predictor_dim, config.joiner_dim
    else:
        dims = list(zip(subnet_config.ff_dims, subnet_config.num_heads, subnet_config.conv_dims))
        predictor_dim, joiner_dim = subnet_config.predictor_dim, subnet_config.joiner_dim
    d, v, cs = config.model_dim, config.vocab_size, config.subsampling_channels
    total = 2 * config.input_dim  # feature normalisation mean and std (constants, counted: they ship)
    if config.subsampling == "stack":
        total += _dense(4 * config.input_dim, cs) + _dense(cs, d)
    else:
        total += (9 * cs + cs) + (9 * cs * cs + cs) + _dense(config.subsampled_freq_dim() * cs, d)
    for ff, heads, conv in dims:
        total += block_params(d, ff, heads, config.resolved_head_dim, conv, config.conv_kernel_size,
                              config.conv_norm)
    p = predictor_dim
    if config.predictor_type == "lstm":
        total += v * p + 4 * (2 * p * p + p)
    else:
        total += v * p + config.predictor_context * p
    total += _dense(d, joiner_dim) + _dense(p, joiner_dim) + _dense(joiner_dim, v)
    total += _dense(d, v) + _dense(p, v)
    if config.use_ctc_head:
        total += _dense(d, v)
    return int(total)
