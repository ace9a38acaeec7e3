"""Tiny odd-dimension configs for tests across tf_todm (B=3, T=23, F=13, D=12, V=7).

Other modules may use these to build small models in their own tests.
"""

import numpy as np

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SearchSpace

B, T, F, V = 3, 23, 13, 7


def tiny_config(**changes) -> TransducerConfig:
    base = dict(input_dim=F, model_dim=12, num_blocks=3, ff_dim=10, num_heads=3, conv_dim=10,
                conv_kernel_size=5, subsampling_channels=6, predictor_dim=8, predictor_context=2,
                joiner_dim=9, vocab_size=V, dropout=0.1)
    base.update(changes)
    return TransducerConfig(**base)


def tiny_space(config: TransducerConfig) -> SearchSpace:
    predictor = (config.predictor_dim,) if config.predictor_type == "lstm" else (3, config.predictor_dim)
    return SearchSpace(num_blocks_choices=(1, 2, 3), ff_dim_choices=(3, 7, 10), num_heads_choices=(1, 2, 3),
                       conv_dim_choices=(5, 10), predictor_dim_choices=predictor, joiner_dim_choices=(4, 9))


def tiny_batch(seed: int = 0, t: int = T):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(B, t, F)).astype(np.float32)
    lengths = np.array([t, t - 6, t - 11], np.int32)
    labels = rng.integers(1, V, size=(B, 5)).astype(np.int32)
    labels[2, 3:] = 0
    return features, lengths, labels
