"""tf_todm.export.compact: shared quantization vectors make the file smaller and change nothing a
reader sees (object API, LiteRT, TFLite-Micro)."""
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.tools import flatbuffer_utils

from tf_todm.export import compact, convert, op_report
from tf_todm.export.runtime import MicroModel

CHANNELS = 12


def converter_model() -> bytes:
    """A raw converter full-int8 model: conv -> conv -> dense -> dense, per-channel weights with
    repeated channel counts (so zero-point vectors repeat), int8 input/output."""
    rng = np.random.default_rng(0)
    k1 = tf.constant(rng.normal(size=(3, 1, 4, CHANNELS)).astype(np.float32))
    k2 = tf.constant(rng.normal(size=(3, 1, CHANNELS, CHANNELS)).astype(np.float32))
    w1 = tf.constant(rng.normal(size=(CHANNELS, CHANNELS)).astype(np.float32))
    w2 = tf.constant(rng.normal(size=(CHANNELS, 7)).astype(np.float32))
    b1, b2 = (tf.constant(rng.normal(size=(n,)).astype(np.float32)) for n in (CHANNELS, 7))

    @tf.function(input_signature=[tf.TensorSpec([1, 10, 1, 4], tf.float32)])
    def net(x):
        h = tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME"))
        h = tf.nn.relu(tf.nn.conv2d(h, k2, 1, "SAME"))
        h = tf.reshape(h, [10, CHANNELS])
        h = tf.nn.relu(tf.matmul(h, w1) + b1)
        return tf.matmul(h, w2) + b2

    c = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()])
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = lambda: ([rng.normal(size=(1, 10, 1, 4)).astype(np.float32)] for _ in range(16))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
    return c.convert()


@pytest.fixture(scope="module")
def models():
    raw = converter_model()
    return raw, compact.compact_model(raw)


def _tensors(model: bytes):
    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    out = []
    for sg in parsed.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            qfields = None if q is None else tuple(
                None if v is None else np.asarray(v).tolist()
                for v in (q.min, q.max, q.scale, q.zeroPoint)) + (q.quantizedDimension,)
            data = parsed.buffers[t.buffer].data
            out.append((t.name, t.type, list(t.shape), qfields, None if data is None else bytes(data)))
    ops = [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for sg in parsed.subgraphs for op in sg.operators]
    return out, ops


def _distinct_vector_bytes(model: bytes) -> int:
    """Bytes of the distinct scale and zero-point vectors, by content (independent of file layout)."""
    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    seen = set()
    for sg in parsed.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is None:
                continue
            for values, dtype in ((q.scale, np.float32), (q.zeroPoint, np.int64)):
                if values is not None:
                    seen.add((np.dtype(dtype).itemsize, np.asarray(values, dtype).tobytes()))
    return sum(4 + len(b) for _, b in seen)


def _nominal_vector_bytes(model: bytes) -> int:
    """Bytes of one scale and one zero-point vector per quantized tensor (a converter's layout)."""
    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    return sum(8 + 12 * len(t.quantization.scale) for sg in parsed.subgraphs for t in sg.tensors
               if t.quantization is not None and t.quantization.scale is not None)


def test_compact_model_reads_back_identically_and_is_smaller(models):
    raw, small = models
    assert _tensors(small) == _tensors(raw)
    assert len(small) < len(raw)
    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(raw))
    per_channel = [t for sg in parsed.subgraphs for t in sg.tensors
                   if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1]
    assert len(per_channel) >= 6  # 4 weights + at least the biases
    nominal = _nominal_vector_bytes(raw)
    assert op_report.size_breakdown(raw)["quantization_params"] == nominal
    assert len(raw) - len(small) >= nominal - _distinct_vector_bytes(raw)
    # the compact file: each distinct vector once, and nothing else changed size
    assert op_report.size_breakdown(small)["quantization_params"] == _distinct_vector_bytes(raw)
    assert _distinct_vector_bytes(raw) < nominal
    assert op_report.size_breakdown(small)["constants"] == op_report.size_breakdown(raw)["constants"]


def test_compact_model_runs_bit_identically_in_litert_and_tflm(models):
    raw, small = models
    x = np.random.default_rng(1).integers(-128, 128, size=(1, 10, 1, 4)).astype(np.int8)
    litert, tflm = [], []
    for m in (raw, small):
        it = Interpreter(model_content=m, num_threads=1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        litert.append(it.get_tensor(it.get_output_details()[0]["index"]))
        tflm.append(MicroModel(m).run(x)[0])
    assert litert[0].dtype == np.int8 and litert[0].shape == (10, 7)
    assert len(np.unique(litert[0])) > 10  # a real output, not a constant
    np.testing.assert_array_equal(litert[1], litert[0])
    np.testing.assert_array_equal(tflm[1], tflm[0])
    # the two runtimes' kernels round differently (1 LSB), the files do not matter
    assert np.abs(tflm[0].astype(int) - litert[0].astype(int)).max() <= 2


def test_compact_model_strip_names_keeps_signatures(models):
    raw, _ = models
    stripped = compact.compact_model(raw, strip_names=True)
    names = [t[0] for t in _tensors(stripped)[0]]
    assert all(n is None for n in names) and any(n is not None for n in (t[0] for t in _tensors(raw)[0]))
    it_raw, it_small = Interpreter(model_content=raw), Interpreter(model_content=stripped)
    assert it_small.get_signature_list() == it_raw.get_signature_list()


def test_convert_writes_shared_quantization_vectors():
    k = tf.Variable(np.random.default_rng(2).normal(size=(8, CHANNELS)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def fn(x):
        return {"y": tf.matmul(tf.matmul(x, k), tf.eye(CHANNELS) * 0.5 + 0.1)}

    rng = np.random.default_rng(3)
    model = convert.convert({"serve": fn.get_concrete_function()}, "full_int8",
                            lambda: ({"x": rng.normal(size=(1, 8)).astype(np.float32)} for _ in range(8)))
    assert op_report.size_breakdown(model)["quantization_params"] == _distinct_vector_bytes(model)
    assert _distinct_vector_bytes(model) < _nominal_vector_bytes(model)
