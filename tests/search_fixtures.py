"""The small search space shared by the search tests, and its brute-force enumeration."""

import itertools

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.search.toy import toy_model_config

SMALL_CFG = toy_model_config(input_dim=13, model_dim=12, num_blocks=2, ff_dim=24, num_heads=2, conv_dim=8,
                             conv_kernel_size=5, subsampling_channels=5, predictor_dim=8, joiner_dim=8,
                             vocab_size=7, chunk_size=4, left_context=6)
SMALL_SPACE = SearchSpace((1, 2), (8, 16, 24), (1, 2), (4, 8), (4, 8), (4, 8))  # 624 subnets


def all_configs(space: SearchSpace):
    """Every subnet of `space` (brute force; for small spaces only)."""
    for n in space.num_blocks_choices:
        block = list(itertools.product(space.ff_dim_choices, space.num_heads_choices, space.conv_dim_choices))
        for blocks in itertools.product(block, repeat=n):
            for p in space.predictor_dim_choices:
                for j in space.joiner_dim_choices:
                    yield SubnetConfig(n, tuple(b[0] for b in blocks), tuple(b[1] for b in blocks),
                                       tuple(b[2] for b in blocks), p, j)
