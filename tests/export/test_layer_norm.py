"""tf_todm.models.layer_norm: numpy float64 reference, drop-in for Keras' LayerNormalization
(same variables, checkpoints restore across), and its TFLite graph has no SQUARED_DIFFERENCE."""

import keras
import numpy as np
import tensorflow as tf

from tf_todm.export import convert, op_report
from tf_todm.models.layer_norm import LayerNorm, layer_norm

D = 7


def reference(x, gamma, beta, eps=1e-5):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layer_norm_matches_float64_reference():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 5, D)) * 4 + 2).astype(np.float32)
    gamma, beta = rng.normal(size=D).astype(np.float32), rng.normal(size=D).astype(np.float32)
    got = layer_norm(tf.constant(x), gamma, beta).numpy()
    np.testing.assert_allclose(got, reference(x, gamma, beta), rtol=1e-5, atol=1e-5)


def test_drop_in_for_keras_layer_normalization():
    """Same outputs and gradients as keras' layer with the same weights; same variable names and
    shapes; config round trip; a checkpoint written from the Keras layer restores into ours."""
    rng = np.random.default_rng(1)
    x = tf.constant((rng.normal(size=(2, 4, D)) * 3 - 1).astype(np.float32))
    theirs = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
    ours = LayerNorm(epsilon=1e-5, name="norm")
    theirs.build((None, None, D))
    ours.build((None, None, D))
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [(w.name, tuple(w.shape)) for w in theirs.weights]
    theirs.set_weights([rng.normal(size=D).astype(np.float32) for _ in range(2)])

    module_theirs = tf.Module()
    module_theirs.norm = theirs
    path = tf.train.Checkpoint(model=module_theirs).write(f"{tf.compat.v1.test.get_temp_dir()}/ln_ckpt")
    module_ours = tf.Module()
    module_ours.norm = ours
    tf.train.Checkpoint(model=module_ours).read(path).assert_existing_objects_matched()
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ours, y_theirs = ours(x), theirs(x)
        w = tf.constant(rng.normal(size=(2, 4, D)).astype(np.float32))
        l_ours, l_theirs = tf.reduce_sum(y_ours * w), tf.reduce_sum(y_theirs * w)
    np.testing.assert_allclose(y_ours.numpy(), y_theirs.numpy(), atol=2e-5)
    np.testing.assert_allclose(y_ours.numpy(), reference(x, *[v.numpy() for v in theirs.weights]), atol=2e-5)
    for a, b in zip(tape.gradient(l_ours, [x] + ours.weights), tape.gradient(l_theirs, [x] + theirs.weights)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)

    clone = LayerNorm.from_config(ours.get_config())
    assert clone.epsilon == 1e-5 and isinstance(clone, keras.layers.LayerNormalization)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(ours))
    assert type(restored) is LayerNorm


def test_tflite_graph_has_no_squared_difference_or_neg():
    ours = LayerNorm(epsilon=1e-5)
    theirs = keras.layers.LayerNormalization(epsilon=1e-5)
    ops = {}
    for name, layer in (("ours", ours), ("theirs", theirs)):
        layer.build((None, None, D))
        fn = tf.function(lambda x, l=layer: {"y": l(x)}).get_concrete_function(
            tf.TensorSpec([1, 3, D], tf.float32, name="x"))
        ops[name] = set(op_report.op_report(convert.convert({"s": fn}, "float32")).ops)
    assert "SQUARED_DIFFERENCE" in ops["theirs"]  # why this layer exists (guards the premise)
    assert not ops["ours"] & {"SQUARED_DIFFERENCE", "NEG", "SQUARE"}, ops["ours"]
    assert {"MEAN", "RSQRT", "MUL"} <= ops["ours"]


def test_rejects_unsupported_settings():
    import pytest

    with pytest.raises(ValueError, match="center"):
        LayerNorm(center=False)
    layer = LayerNorm(axis=1)
    with pytest.raises(ValueError, match="last axis"):
        layer.build((None, 4, D))
