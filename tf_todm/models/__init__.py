"""tf_todm.models: the elastic Conformer-Transducer.

Public API:
  TransducerConfig, ConfigError, search_space          (config.py)
  SubnetConfig, SearchSpace                            (elastic_space.py)
  encode_subnet, validate_subnet, SubnetError          (elastic.py)
  Transducer                                           (transducer.py)
  count_params                                         (param_count.py)
  adaptive_dropout_rate                                (adaptive_dropout.py)
  sort_by_importance                                   (importance.py)
  subsampled_lengths                                   (subsampling.py)
  recalibrate_batch_norm, has_batch_norm               (batch_norm_calibration.py)
"""

from tf_todm.models.adaptive_dropout import adaptive_dropout_rate
from tf_todm.models.batch_norm_calibration import has_batch_norm, recalibrate_batch_norm
from tf_todm.models.config import ConfigError, TransducerConfig, search_space
from tf_todm.models.elastic import SubnetError, encode_subnet, validate_subnet
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.models.importance import sort_by_importance
from tf_todm.models.param_count import count_params
from tf_todm.models.subsampling import subsampled_lengths
from tf_todm.models.transducer import Transducer

__all__ = ["TransducerConfig", "ConfigError", "search_space", "SubnetConfig", "SearchSpace",
           "encode_subnet", "validate_subnet", "SubnetError", "Transducer", "count_params",
           "adaptive_dropout_rate", "sort_by_importance", "subsampled_lengths", "recalibrate_batch_norm",
           "has_batch_norm"]
