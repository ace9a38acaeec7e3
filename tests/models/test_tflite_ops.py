"""The extracted model converts to TFLite with BUILTIN ops only and matches Keras (float, 1e-4).

Conversion route: `keras.export.ExportArchive` (tracks the Keras variables so the converter
freezes them) -> `TFLiteConverter.from_saved_model`. (`from_concrete_functions` on a Keras 3 model
leaves VAR_HANDLE/READ_VARIABLE ops with uninitialised values in TF 2.21.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer
from tf_todm.models.testing import tiny_batch, tiny_config, tiny_space


def _convert(model, endpoints, tmp_path):
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(str(tmp_path / "saved"))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"), signature_keys=list(endpoints))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    return interpreter, {o["op_name"] for o in interpreter._get_ops_details()}


@pytest.mark.parametrize("predictor_type", ["stateless", pytest.param("lstm", marks=pytest.mark.slow)])
def test_extracted_model_converts_to_builtins(tmp_path, predictor_type):
    config = tiny_config(predictor_type=predictor_type, chunk_size=2, left_context=4, causal_conv=True)
    supernet = Transducer(config)
    model = extract_subnet(supernet, tiny_space(config).sample(np.random.default_rng(3)))
    features, lengths, _ = tiny_batch()
    state_specs = [tf.TensorSpec([1] + s.shape[1:], s.dtype) for s in model.predictor.init_state(1)]

    def encode(features, lengths):
        enc, enc_lengths = model.encode(features, lengths)
        return {"enc": enc, "enc_lengths": enc_lengths}

    def decode_step(token, *state):
        out, new_state = model.predictor.step(token, state)
        return {"pred_proj": model.joiner.project_predictor(out),
                **{f"state_{i}": s for i, s in enumerate(new_state)}}

    def join(enc_frame, pred_proj):
        return {"logits": model.joiner.join(model.joiner.project_encoder(enc_frame), pred_proj)}

    interpreter, ops = _convert(model, {
        "encode": (encode, [tf.TensorSpec([1, 23, 13]), tf.TensorSpec([1], tf.int32)]),
        "decode_step": (decode_step, [tf.TensorSpec([1], tf.int32), *state_specs]),
        "join": (join, [tf.TensorSpec([1, 12]), tf.TensorSpec([1, model.config.joiner_dim])]),
    }, tmp_path)
    assert not {"VAR_HANDLE", "READ_VARIABLE", "FLEX_DELEGATE", "CUSTOM"} & ops, ops
    assert not any(op.startswith("Flex") for op in ops)

    got = interpreter.get_signature_runner("encode")(features=features[1:2], lengths=lengths[1:2])
    want = encode(features[1:2], lengths[1:2])
    np.testing.assert_allclose(got["enc"], want["enc"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(got["enc_lengths"], want["enc_lengths"].numpy())

    state = [s.numpy() for s in model.predictor.init_state(1)]
    inputs = {"token": np.array([3], np.int32), **{f"state_{i}": s for i, s in enumerate(state)}}
    runner = interpreter.get_signature_runner("decode_step")
    names = runner.get_input_details()
    got = runner(**{n: inputs[n] if n in inputs else state[int(n.split("_")[-1])] for n in names})
    want = decode_step(tf.constant([3]), *state)
    np.testing.assert_allclose(got["pred_proj"], want["pred_proj"].numpy(), atol=1e-4)

    frame = np.asarray(encode(features[:1], lengths[:1])["enc"])[0, 2:3]
    got = interpreter.get_signature_runner("join")(enc_frame=frame, pred_proj=want["pred_proj"].numpy())
    np.testing.assert_allclose(got["logits"], join(frame, want["pred_proj"])["logits"].numpy(), atol=1e-4)


def test_streaming_encoder_converts_and_matches_full_sequence(tmp_path):
    config = tiny_config(chunk_size=2, left_context=3, causal_conv=True)
    model = Transducer(config)
    encoder = model.encoder
    state = encoder.init_state(1)

    def stream(features, *state):
        out, new_state = encoder.stream_step(features, state)
        return {"enc": out, **{f"new_state_{i}": s for i, s in enumerate(new_state)}}

    specs = [tf.TensorSpec(s.shape, s.dtype) for s in state]
    interpreter, ops = _convert(model, {"stream": (stream, [tf.TensorSpec([1, 8, 13]), *specs])}, tmp_path)
    assert not {"VAR_HANDLE", "READ_VARIABLE", "CUSTOM"} & ops, ops
    runner = interpreter.get_signature_runner("stream")
    features = np.random.default_rng(0).normal(size=(1, 40, 13)).astype(np.float32)
    full, _ = model.encode(features, [40])
    values, outputs = [s.numpy() for s in state], []
    for c in range(5):
        feed = {f"state_{i}": v for i, v in enumerate(values)}
        result = runner(features=features[:, 8 * c: 8 * c + 8], **feed)
        outputs.append(result["enc"])
        values = [result[f"new_state_{i}"] for i in range(len(values))]
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full.numpy(), atol=1e-4)
