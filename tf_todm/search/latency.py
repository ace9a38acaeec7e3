"""A real `measure_fn` for `MeasuredLatency`: LiteRT timing of the extracted subnet's encoder.

`tflite_encoder_latency_fn(supernet)` returns `measure(subnet) -> ms per second of audio`:
extract the subnet (`tf_todm.export.extract.extract_subnet`), convert its full-sequence encoder for
`audio_s` seconds of features to a builtin-ops `.tflite` (`tf_todm.export.convert.convert`, default
dynamic-range int8), and time it in LiteRT (`ai_edge_litert`, `num_threads` threads): median of
`repeats` runs after one warm-up (min by default), divided by `audio_s`. The predictor and joiner are not timed (the
encoder dominates the compute of greedy decoding, see `cost_model.macs_breakdown`); the export
module's streaming runner measures the whole recognizer per chunk.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from tf_todm.models.elastic_space import SubnetConfig


def time_litert(run: Callable[[], Any], repeats: int = 5, warmup: int = 1, statistic: str = "median") -> float:
    """Wall time in seconds of `run()` over `repeats` calls after `warmup` calls: their "median"
    or "min" (the min is the robust choice on a shared, loaded machine: load only adds time)."""
    if statistic not in ("median", "min"):
        raise ValueError(f"time_litert: statistic must be median|min, got {statistic!r}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) if statistic == "median" else np.min(times))


def tflite_encoder_latency_fn(supernet: Any, *, mode: str = "dynamic_int8", audio_s: float = 4.0,
                              repeats: int = 10, num_threads: int = 1, statistic: str = "min",
                              seed: int = 0) -> Callable[[SubnetConfig], float]:
    """`measure(subnet) -> ms of LiteRT encoder time per second of audio` (see module docstring).

    Args:
      supernet: the trained (or any) supernet `Transducer`.
      mode: `tf_todm.export.convert.MODES` entry without calibration (float32, float16, dynamic_int8).
      audio_s: seconds of audio per timed run (100 feature frames per second).
      repeats: timed runs.
      statistic: "min" (default; robust to other processes' load) or "median" of the timed runs.
      num_threads: LiteRT CPU threads.
      seed: seed of the random input features.
    """
    import tensorflow as tf

    from tf_todm.export.convert import convert
    from tf_todm.export.extract import extract_subnet
    from tf_todm.export.runtime import LiteRTModel

    frames = int(round(audio_s * 100))
    input_dim = supernet.config.input_dim
    features = np.random.default_rng(seed).standard_normal((1, frames, input_dim)).astype(np.float32)

    def measure(subnet: SubnetConfig) -> float:
        model = extract_subnet(supernet, subnet)

        @tf.function
        def encode(features):
            enc, _ = model.encode(features, tf.fill([1], frames), training=False)
            return {"encoder": enc}

        fn = encode.get_concrete_function(tf.TensorSpec([1, frames, input_dim], tf.float32, name="features"))
        lite = LiteRTModel(convert({"encode": fn}, mode), num_threads=num_threads)
        seconds = time_litert(lambda: lite.run("encode", features=features), repeats=repeats,
                              statistic=statistic)
        return 1000.0 * seconds / audio_s

    return measure
