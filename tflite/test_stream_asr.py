"""On-device parity: tflite/stream_asr.py (app loop) == runtime.StreamingRecognizer == TF module."""

import importlib.util
import os

import numpy as np
import tensorflow as tf

from tf_todm.data.features import LogMelSpectrogram
from tf_todm.export import convert, op_report, runtime, sidecar, streaming
from tf_todm.models.testing import tiny_config
from tf_todm.models.transducer import Transducer

_spec = importlib.util.spec_from_file_location("stream_asr", os.path.join(os.path.dirname(__file__), "stream_asr.py"))
stream_asr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stream_asr)


def test_app_loop_matches_tf_module(tmp_path):
    tf.keras.utils.set_random_seed(4)
    config = tiny_config(chunk_size=2, left_context=4, causal_conv=True, predictor_type="lstm", dropout=0.0)
    module = streaming.StreamingTransducer(streaming.make_adapter(Transducer(config)),
                                           frontend=LogMelSpectrogram(num_mel_bins=13, dft_as_matmul=True))
    model = convert.convert(module.signatures(), "float32")
    path = str(tmp_path / "m.tflite")
    with open(path, "wb") as f:
        f.write(model)
    side = {"format_version": 1, "model_file": "m.tflite", "sample_rate_hz": 16000, "features": {},
            "streaming": module.state_info(), "signatures": op_report.op_report(model).signatures,
            "blank_id": 0, "vocab_size": 7, "quantization": "float32", "tokenizer_file": None}
    sidecar.write_sidecar(sidecar.sidecar_path_for(path), side)
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.normal(size=int(rng.integers(3000, 9000)))).astype(np.float32)
    ref_tokens, _ = streaming.stream_module(module, audio)
    tokens, text, lat = stream_asr.recognize(path, audio)
    lib = runtime.StreamingRecognizer(runtime.LiteRTModel(path), sidecar.load_sidecar(sidecar.sidecar_path_for(path)))
    assert tokens == ref_tokens == lib.recognize(audio).tokens
    assert len(ref_tokens) > 0 and text is None and len(lat) >= 1
