"""LiteRT latency measurement of an extracted subnet's encoder (real conversion and interpreter)."""

import time

import pytest

from tf_todm.search.latency import time_litert


def test_time_litert_is_the_median_after_warmup():
    calls = []

    def run():
        calls.append(None)
        time.sleep(0.05 if len(calls) == 1 else 0.01)  # the slow first call is the warm-up

    seconds = time_litert(run, repeats=3, warmup=1)
    assert len(calls) == 4
    assert 0.009 < seconds < 0.03
    durations = iter([0.0, 0.03, 0.01, 0.02])
    assert time_litert(lambda: time.sleep(next(durations)), repeats=3, statistic="min") < 0.02
    with pytest.raises(ValueError, match="median|min"):
        time_litert(lambda: None, statistic="mean")


@pytest.mark.slow
def test_tflite_latency_of_two_subnets(tmp_path):
    pytest.importorskip("tf_todm.export.convert")
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf

    from tf_todm.models.config import TransducerConfig
    from tf_todm.models.elastic_space import SubnetConfig
    from tf_todm.models.transducer import Transducer
    from tf_todm.search.cost_model import MeasuredLatency
    from tf_todm.search.latency import tflite_encoder_latency_fn

    config = TransducerConfig(input_dim=13, model_dim=24, num_blocks=3, ff_dim=96, num_heads=3,
                              conv_dim=24, conv_kernel_size=5, subsampling_channels=5,
                              predictor_dim=10, joiner_dim=9, vocab_size=7, chunk_size=4, left_context=8)
    tf.keras.utils.set_random_seed(0)
    supernet = Transducer(config)
    measured = MeasuredLatency(str(tmp_path / "lat.json"),
                               tflite_encoder_latency_fn(supernet, audio_s=2.0, repeats=7))
    small = SubnetConfig(1, (32,), (1,), (8,), 10, 9)
    large = SubnetConfig(3, (96,) * 3, (3,) * 3, (24,) * 3, 10, 9)
    t_small, t_large = measured(small), measured(large)
    assert 0 < t_small < t_large  # three full blocks cost more than one narrow block
    assert measured.num_measured == 2 and MeasuredLatency(str(tmp_path / "lat.json"))(large) == t_large
