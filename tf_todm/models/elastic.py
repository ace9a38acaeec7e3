"""Tensor encoding of a subnet, prefix masks and tensor-rate dropout.

Elastic widths are masks at the supernet's max shape: a hidden unit / head / channel beyond the
subnet's width is multiplied by 0 at the point where the extracted (sliced) model would not have
it, so the masked supernet computes EXACTLY what the sliced model computes. All widths enter as
tensors, so one `tf.function` trace serves every subnet.

Subnet dict (from `encode_subnet`), L = supernet blocks:
  block_active  f32 [L]   1 for the first `num_blocks` blocks, else 0
  ff_dim        i32 [L]   feed-forward hidden width per block (max for inactive blocks)
  num_heads     i32 [L]   attention heads per block
  conv_dim      i32 [L]   conv-module channels per block
  predictor_dim i32 []    predictor width
  joiner_dim    i32 []    joiner hidden width
  dropout_rate  f32 []    dropout used by this subnet while training
  layer_drop_rate f32 []  probability of skipping an active block while training
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SubnetConfig


class SubnetError(ValueError):
    """A `SubnetConfig` does not fit the supernet it is applied to."""


SUBNET_KEYS = ("block_active", "ff_dim", "num_heads", "conv_dim", "predictor_dim", "joiner_dim",
               "dropout_rate", "layer_drop_rate")


def validate_subnet(config: TransducerConfig, subnet_config: SubnetConfig) -> None:
    """Raises `SubnetError` naming the field when the subnet exceeds the supernet."""
    sc = subnet_config
    if sc.num_blocks > config.num_blocks:
        raise SubnetError(f"SubnetConfig.num_blocks={sc.num_blocks}: supernet has {config.num_blocks} blocks")
    for i in range(sc.num_blocks):
        ff, heads, conv = config.block_dims(i)
        for name, value, limit in (("ff_dims", sc.ff_dims[i], ff), ("num_heads", sc.num_heads[i], heads),
                                   ("conv_dims", sc.conv_dims[i], conv)):
            if not 1 <= value <= limit:
                raise SubnetError(f"SubnetConfig.{name}[{i}]={value}: expected 1..{limit}")
    if not 1 <= sc.predictor_dim <= config.predictor_dim:
        raise SubnetError(f"SubnetConfig.predictor_dim={sc.predictor_dim}: expected 1..{config.predictor_dim}")
    if config.predictor_type == "lstm" and sc.predictor_dim != config.predictor_dim:
        raise SubnetError(
            f"SubnetConfig.predictor_dim={sc.predictor_dim}: the LSTM predictor is not elastic, "
            f"expected {config.predictor_dim}")
    if not 1 <= sc.joiner_dim <= config.joiner_dim:
        raise SubnetError(f"SubnetConfig.joiner_dim={sc.joiner_dim}: expected 1..{config.joiner_dim}")


def encode_subnet(config: TransducerConfig, subnet_config: SubnetConfig,
                  dropout_rate: Optional[float] = None, layer_drop_rate: float = 0.0) -> dict:
    """Tensor dict describing `subnet_config` inside the supernet `config` (see module doc).

    `dropout_rate` defaults to `config.dropout`; pass `adaptive_dropout_rate(...)` for adaptive
    dropout.
    """
    validate_subnet(config, subnet_config)
    n, total = subnet_config.num_blocks, config.num_blocks
    maxes = [config.block_dims(i) for i in range(total)]
    ff = list(subnet_config.ff_dims) + [m[0] for m in maxes[n:]]
    heads = list(subnet_config.num_heads) + [m[1] for m in maxes[n:]]
    conv = list(subnet_config.conv_dims) + [m[2] for m in maxes[n:]]
    rate = config.dropout if dropout_rate is None else dropout_rate
    return {
        "block_active": tf.constant(np.arange(total) < n, tf.float32),
        "ff_dim": tf.constant(ff, tf.int32),
        "num_heads": tf.constant(heads, tf.int32),
        "conv_dim": tf.constant(conv, tf.int32),
        "predictor_dim": tf.constant(subnet_config.predictor_dim, tf.int32),
        "joiner_dim": tf.constant(subnet_config.joiner_dim, tf.int32),
        "dropout_rate": tf.constant(rate, tf.float32),
        "layer_drop_rate": tf.constant(layer_drop_rate, tf.float32),
    }


def block_subnet(subnet: Optional[dict], index: int) -> Optional[dict]:
    """The per-block slice of a subnet dict: scalars ff_dim, num_heads, conv_dim, dropout_rate."""
    if subnet is None:
        return None
    return {"ff_dim": subnet["ff_dim"][index], "num_heads": subnet["num_heads"][index],
            "conv_dim": subnet["conv_dim"][index], "dropout_rate": subnet["dropout_rate"]}


def prefix_mask(width, max_width: int) -> tf.Tensor:
    """f32 [max_width]: 1 for the first `width` entries, else 0."""
    return tf.cast(tf.range(max_width) < tf.cast(width, tf.int32), tf.float32)


def dropout(x: tf.Tensor, rate, training: bool) -> tf.Tensor:
    """Inverted dropout whose `rate` may be a (per-subnet) scalar tensor; identity unless training."""
    if not training or (isinstance(rate, (int, float)) and rate == 0):
        return x
    rate = tf.cast(rate, x.dtype)
    keep = tf.cast(tf.random.uniform(tf.shape(x), dtype=x.dtype) >= rate, x.dtype)
    return x * keep / (1.0 - rate)
