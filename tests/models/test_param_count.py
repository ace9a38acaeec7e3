"""count_params (arithmetic) equals the extracted Keras model's count_params()."""

import numpy as np
import pytest

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer, count_params
from tf_todm.models.testing import tiny_config, tiny_space


@pytest.mark.parametrize("changes", [{}, {"predictor_type": "lstm", "use_ctc_head": False},
                                     {"predictor_context": 3, "conv_kernel_size": 4},
                                     {"conv_norm": "batch", "subsampling_output_scale": 12.0},
                                     {"subsampling": "stack", "subsampling_channels": 11}])
def test_count_params_equals_extracted_model(changes):
    config = tiny_config(**changes)
    supernet = Transducer(config)
    assert count_params(config) == supernet.count_params()
    space = tiny_space(config)
    rng = np.random.default_rng(0)
    for subnet_config in [space.smallest(), space.largest(), space.sample(rng), space.sample(rng)]:
        assert count_params(config, subnet_config) == extract_subnet(supernet, subnet_config).count_params()


def test_count_params_is_monotone_in_width():
    config = tiny_config()
    space = tiny_space(config)
    assert count_params(config, space.smallest()) < count_params(config, space.largest()) == count_params(config)
