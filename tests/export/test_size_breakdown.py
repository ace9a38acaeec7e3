"""op_report.size_breakdown on a one-layer model whose bytes are known by hand."""
import numpy as np
import tensorflow as tf

from tf_todm.export import op_report

IN, OUT = 16, 5


def convert(full_int8: bool) -> bytes:
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(IN, OUT)).astype(np.float32))
    b = tf.constant(rng.normal(size=(OUT,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, IN], tf.float32)])
    def dense(x):
        return tf.matmul(x, w) + b

    converter = tf.lite.TFLiteConverter.from_concrete_functions([dense.get_concrete_function()])
    if full_int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.normal(size=(1, IN)).astype(np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def test_size_breakdown_counts_weights_biases_and_per_channel_params():
    float_model, int8_model = convert(False), convert(True)
    f = op_report.size_breakdown(float_model)
    assert f["constants"].get("float32") == 4 * (IN * OUT + OUT)
    assert f["quantization_params"] == 0
    q = op_report.size_breakdown(int8_model)
    assert q["constants"]["int8"] == IN * OUT and q["constants"]["int32"] == 4 * OUT
    # the converter writes one scale (4-byte length + 4 B each) and one zero-point (4 + 8 B each)
    # vector per quantized tensor: per-channel weight and bias (OUT entries each) plus per-tensor
    # activations (input, output, and the float<->int8 quantize ops' tensors)
    assert q["quantization_params"] >= 2 * (8 + 12 * OUT) + 2 * (8 + 12)
    assert (q["quantization_params"] - 2 * (8 + 12 * OUT)) % (8 + 12) == 0
    for r, data in ((f, float_model), (q, int8_model)):
        assert r["total"] == len(data) and r["other"] > 0
        assert sum(r["constants"].values()) + r["quantization_params"] + r["other"] == r["total"]
