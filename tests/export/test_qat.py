"""tf_todm.export.qat: weight fake-quant against a numpy reference, one QAT step against an
independently computed straight-through update, QAT runs (finite loss, hooks removed, float
weights kept) and the fine-tuned model still converts to a builtin-only full-int8 model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export import convert, op_report, qat, streaming
from tf_todm.models.testing import tiny_batch, tiny_config
from tf_todm.models.transducer import Transducer


def build(seed=0):
    tf.keras.utils.set_random_seed(seed)
    return Transducer(tiny_config(chunk_size=2, left_context=4, causal_conv=True, predictor_type="lstm",
                                  dropout=0.0))


def reference_quant(w, axis):
    """float64 symmetric narrow-range int8: round-half-up(w / s) * s, s = max|w| / 127 per channel."""
    w = np.asarray(w, np.float64)
    if axis is None:
        m = np.abs(w).max()
    else:
        m = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis % w.ndim), keepdims=True)
    s = m / 127.0
    return np.floor(w / s + 0.5) * s


@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((3, 3, 2, 4), -1), ((5, 6, 1), -2), ((11, 3), None)])
def test_fake_quant_weight_matches_numpy(shape, axis):
    w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = qat.fake_quant_weight(tf.constant(w), axis).numpy()
    want = reference_quant(w, axis)
    s = np.abs(w).max() / 127
    np.testing.assert_allclose(got, want, atol=1e-6 * s + 1e-7)
    assert not np.allclose(got, w)  # it does quantize


def test_one_step_is_the_straight_through_update():
    """SGD step of qat_finetune (weights only) == -lr * dL/dw evaluated at the numpy-quantized
    weights (computed on a separate copy of the model), and not the float-weight gradient step."""
    model, copy = build(), build()
    batch = {k: tf.constant(v) for k, v in qat.make_batch(*tiny_batch(0)).items()}
    variables = [v for part in (copy.encoder, copy.predictor, copy.joiner) for v in part.trainable_variables]
    w0 = [v.numpy() for v in variables]

    def grads_at_current_weights():
        with tf.GradientTape() as tape:
            loss = qat.transducer_loss(copy, batch)
        return float(loss), [np.zeros(v.shape) if g is None else tf.convert_to_tensor(g).numpy()
                             for v, g in zip(variables, tape.gradient(loss, variables))]

    _, grads_float = grads_at_current_weights()
    for k in qat.quantized_kernels(copy):
        k.variable.assign(reference_quant(k.variable.numpy(), k.channel_axis).astype(np.float32))
    loss_q, grads_q = grads_at_current_weights()
    lr = 0.05
    hist = qat.qat_finetune(model, [batch], 1, activation_bits=None, optimizer=keras.optimizers.SGD(lr))
    assert hist["losses"][0] == pytest.approx(loss_q, rel=1e-5)
    model_vars = [v for part in (model.encoder, model.predictor, model.joiner) for v in part.trainable_variables]
    delta = np.concatenate([(mv.numpy() - w).ravel() for mv, w in zip(model_vars, w0)])
    ste = np.concatenate([(-lr * g).ravel() for g in grads_q])
    plain = np.concatenate([(-lr * g).ravel() for g in grads_float])
    err_ste = np.linalg.norm(delta - ste) / np.linalg.norm(ste)
    err_plain = np.linalg.norm(delta - plain) / np.linalg.norm(plain)
    assert err_ste < 2e-3 and err_plain > 10 * err_ste, (err_ste, err_plain)


def test_qat_runs_restores_hooks_and_converts_builtin_only():
    model = build()
    batches = [qat.make_batch(*tiny_batch(s, t=32)) for s in range(2)]
    dense = [l for l in model.joiner._flatten_layers() if isinstance(l, keras.layers.Dense)]
    hist = qat.qat_finetune(model, batches, 4, learning_rate=1e-3)
    assert len(hist["losses"]) == 4 and np.all(np.isfinite(hist["losses"]))
    # every Dense/Conv/LSTM/Embedding kernel of the deployed parts is quantized
    n_dense = sum(isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.DepthwiseConv1D,
                                 keras.layers.Embedding))
                  for part in (model.encoder, model.predictor, model.joiner) for l in qat._unique_layers(part))
    assert hist["num_quantized_kernels"] == n_dense + 2  # + LSTM kernel and recurrent kernel
    assert hist["num_activation_points"] > 20
    for lo, hi in hist["activation_ranges"].values():
        assert lo <= 0.0 <= hi and lo < hi
    assert all("call" not in vars(l) for l in dense)  # hooks removed
    # float shadow weights are kept: a kernel is not on its int8 grid after the steps
    k = model.joiner.output_dense.kernel.numpy()
    assert not np.allclose(k, reference_quant(k, -1), atol=1e-7)

    module = streaming.StreamingTransducer(streaming.make_adapter(model))
    feats = [b["features"][i, : b["feature_lengths"][i]] for b in batches for i in range(3)]
    int8 = convert.convert(module.signatures(), "full_int8", streaming.representative_dataset(module, feats, 60))
    report = op_report.check_builtin_only(int8)
    assert "int8" in report.tensor_dtypes and report.num_per_channel_tensors > 0


def test_bad_requests():
    model = build()
    with pytest.raises(qat.QatError, match="steps"):
        qat.qat_finetune(model, [], 0)
    with pytest.raises(qat.QatError, match="empty"):
        qat.qat_finetune(model, [], 3)
