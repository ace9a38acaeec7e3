"""ScaledAdam vs a hand-checked step and an independent float64 NumPy reference."""
import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.optim import Eden, ScaledAdam

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("optim_numpy_reference", _HERE / "numpy_reference.py")
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def _grads_for(step, shapes, rng, boost_steps=()):
    grads = [rng.standard_normal(s) for s in shapes]
    if step in boost_steps:
        grads = [g * 40.0 for g in grads]
    return grads


def test_single_step_by_hand():
    # Step 0: v_hat = g^2, so the Adam part is -lr * (1 - beta_1) * rms(p) * sign(g).
    w = keras.Variable(np.array([[2.0, -2.0], [2.0, -2.0]], np.float32))
    s = keras.Variable(np.float32(1.0))
    opt = ScaledAdam(learning_rate=0.1)
    opt.apply([tf.constant([[3.0, -0.5], [0.25, 1.0]]), tf.constant(0.5)], [w, s])
    # rms(w) = 2 -> change 0.1 * 0.1 * 2 = 0.02 against the gradient sign.
    np.testing.assert_allclose(w.numpy(), [[1.98, -1.98], [1.98, -2.02]], rtol=0, atol=1e-6)
    # scalar: lr * scalar_lr_scale * (1 - beta_1) = 0.001 against the sign.
    np.testing.assert_allclose(s.numpy(), 0.999, rtol=0, atol=1e-7)
    assert int(opt.iterations.numpy()) == 1
    assert int(opt.num_skipped_steps.numpy()) == 0


CONFIGS = {
    # default periods: size updates at 3, 7, 11; clipping threshold set at step 10 (irregular).
    "defaults": dict(kwargs={}, boost=(11,), scalar0=0.3),
    # short periods: regular threshold refreshes at 5 and 10, size updates at 2, 5, 8, 11, scalar
    # clamp active, Eden schedule, tiny tensor below param_min_rms.
    "short_periods_eden": dict(
        kwargs=dict(size_update_period=3, clipping_update_period=5, param_min_rms=1e-3,
                    clipping_scale=1.5),
        boost=(7, 11), scalar0=9.999, eden=True, tiny=True),
    # param_max_rms cap binding: gradients shrink-opposed (-p), max rms just above the start rms.
    "max_rms_cap": dict(kwargs=dict(param_max_rms=1.02, size_update_period=2, learning_rate=0.3),
                        boost=(), scalar0=-0.5, grow=True),
    # learned-scale step beyond +-0.1 (lr * scalar_lr_scale * S = 0.2): the clamp binds.
    "scale_clamp": dict(kwargs=dict(learning_rate=0.5), boost=(), scalar0=1.0, shrink=True),
}


def _run_both(name, num_steps=12, seed=0):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(seed)
    shapes = [(3, 5), (7,), ()]
    init = [rng.standard_normal((3, 5)), rng.standard_normal(7) * (1e-4 if cfg.get("tiny") else 1.0),
            np.array(cfg["scalar0"])]
    if cfg.get("grow"):
        init[0] = init[0] / np.sqrt(np.mean(init[0] ** 2))  # rms exactly 1
    kwargs = dict(cfg["kwargs"])
    lr = kwargs.pop("learning_rate", 0.05)
    if cfg.get("eden"):
        sched = dict(base_lr=0.05, lr_batches=6, lr_epochs=2, warmup_batches=4, steps_per_epoch=5)
        tf_lr, ref_lr = Eden(**sched), (lambda b: ref.eden_lr(b, **sched))
    else:
        tf_lr, ref_lr = lr, lr
    opt = ScaledAdam(learning_rate=tf_lr, **kwargs)
    variables = [keras.Variable(x.astype(np.float32)) for x in init]
    reference = ref.RefScaledAdam([x.astype(np.float32) for x in init], lr=ref_lr, **kwargs)
    rows = []
    for step in range(num_steps):
        grads = _grads_for(step, shapes, rng, cfg["boost"])
        if cfg.get("grow"):
            grads[0] = -np.asarray(variables[0].numpy(), np.float64) + 0.01 * grads[0]
        if cfg.get("shrink"):
            grads[0] = np.asarray(variables[0].numpy(), np.float64) + 0.01 * grads[0]
        if name == "short_periods_eden":
            grads[2] = np.array(-1.0)  # pushes the scalar up against scalar_max
        opt.apply([tf.constant(g, tf.float32) for g in grads], variables)
        reference.step([g.astype(np.float32) for g in grads], global_step=step)
        rows.append((reference.factors[-1], float(opt.last_clip_factor.numpy())))
    return opt, variables, reference, rows


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_table_against_numpy(name):
    opt, variables, reference, rows = _run_both(name)
    for v, r in zip(variables, reference.params):
        np.testing.assert_allclose(v.numpy(), r, rtol=2e-5, atol=1e-6)
    ref_factors, tf_factors = zip(*rows)
    np.testing.assert_allclose(tf_factors, ref_factors, rtol=1e-5)
    if name not in ("max_rms_cap", "scale_clamp"):
        assert min(ref_factors) < 0.9, "the table must include a clipped step"
    # slots against the reference state
    for i, st in enumerate(reference.state):
        np.testing.assert_allclose(opt._deltas[i].numpy(), st["delta"], rtol=2e-4, atol=1e-7)
        np.testing.assert_allclose(opt._exp_avg_sqs[i].numpy(), st["v"], rtol=1e-5, atol=1e-12)
        if "rms" in st:
            np.testing.assert_allclose(opt._param_rms[i].numpy(), st["rms"], rtol=1e-5)
    if name == "short_periods_eden":
        assert abs(variables[2].numpy()) > 10.0 - 1e-3  # clamp reached
        assert reference.params[2] < 10.0 + 0.01
        assert reference.hits["min_rms"] > 0  # the tiny vector's scale step was zeroed
    if name == "max_rms_cap":
        assert reference.hits["max_rms"] > 0  # the param_max_rms cap bound at least once
    if name == "scale_clamp":
        assert reference.hits["clamp"] > 0


def test_long_run_past_bias_correction_cutoff_and_regular_refreshes():
    # 1 - 0.98^(t+1) reaches 0.99 at t = 227; thresholds refresh at 10, 20, 40, 100, 200.
    rng = np.random.default_rng(11)
    init = [rng.standard_normal((2, 3)), np.array(0.4)]
    variables = [keras.Variable(x.astype(np.float32)) for x in init]
    opt = ScaledAdam(learning_rate=0.02)
    reference = ref.RefScaledAdam([x.astype(np.float32) for x in init], lr=0.02)
    apply = tf.function(lambda g: opt.apply(g, variables))
    for step in range(240):
        grads = [rng.standard_normal(x.shape) * (6.0 if step % 37 == 36 else 1.0) for x in init]
        apply([tf.constant(g, tf.float32) for g in grads])
        reference.step([g.astype(np.float32) for g in grads], global_step=step)
    assert min(reference.factors) < 0.9
    for v, r in zip(variables, reference.params):
        np.testing.assert_allclose(v.numpy(), r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(opt._exp_avg_sqs[0].numpy(), reference.state[0]["v"], rtol=1e-4)


def test_tf_function_matches_eager():
    rng = np.random.default_rng(3)
    init = [rng.standard_normal((4, 3)), rng.standard_normal(5), np.array(0.7)]
    grads = [[rng.standard_normal(x.shape) for x in init] for _ in range(9)]
    results = []
    for compiled in (False, True):
        variables = [keras.Variable(x.astype(np.float32)) for x in init]
        opt = ScaledAdam(learning_rate=0.05, clipping_update_period=4)
        step = opt.apply
        if compiled:
            step = tf.function(lambda g: opt.apply(g, variables))
        for g in grads:
            tensors = [tf.constant(x, tf.float32) for x in g]
            step(tensors) if compiled else step(tensors, variables)
        results.append([v.numpy() for v in variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nan_gradient_skips_step_and_counts_it():
    rng = np.random.default_rng(5)
    init = [rng.standard_normal((3, 5)), rng.standard_normal(7), np.array(0.2)]
    variables = [keras.Variable(x.astype(np.float32)) for x in init]
    opt = ScaledAdam(learning_rate=0.05, clipping_update_period=5)
    reference = ref.RefScaledAdam([x.astype(np.float32) for x in init], lr=0.05,
                                  clipping_update_period=5)
    apply = tf.function(lambda g: opt.apply(g, variables))
    for step in range(9):
        grads = [rng.standard_normal(x.shape) for x in init]
        if step in (3, 6):
            grads[1][2] = np.nan if step == 3 else np.inf
            before = [v.numpy().copy() for v in opt.variables if v.dtype != "int64"]
        apply([tf.constant(g, tf.float32) for g in grads])
        reference.step([g.astype(np.float32) for g in grads], global_step=step)
        if step in (3, 6):
            after = [v.numpy() for v in opt.variables if v.dtype != "int64"]
            changed = [not np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after)]
            # only the two logging variables (last norm / factor) may change on a skipped step
            assert sum(changed) <= 2
        for v in variables:
            assert np.isfinite(v.numpy()).all()
    assert int(opt.num_skipped_steps.numpy()) == 2 == reference.skipped
    assert int(opt.iterations.numpy()) == 9
    assert int(opt.algorithm_step().numpy()) == 7
    for v, r in zip(variables, reference.params):
        np.testing.assert_allclose(v.numpy(), r, rtol=2e-5, atol=1e-6)


def test_config_round_trip_with_schedule():
    opt = ScaledAdam(learning_rate=Eden(0.03, lr_batches=100, steps_per_epoch=9), clipping_scale=None,
                     beta_2=0.95, size_update_period=3, clipping_update_period=11, scalar_max=4.0)
    config = opt.get_config()
    serialized = keras.saving.serialize_keras_object(opt)
    json.dumps(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, ScaledAdam)
    assert restored.get_config() == config
    assert isinstance(restored._learning_rate, Eden)
    assert restored._learning_rate.get_config() == opt._learning_rate.get_config()
    clone = ScaledAdam.from_config(ScaledAdam(learning_rate=0.01).get_config())
    assert clone.get_config()["learning_rate"] == pytest.approx(0.01)


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="beta_1"):
        ScaledAdam(beta_1=1.5)
    with pytest.raises(ValueError, match="size_update_period"):
        ScaledAdam(size_update_period=0)


def test_tiny_keras_model_loss_decreases():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 5)).astype(np.float32)
    y = (np.tanh(x @ rng.standard_normal((5, 3))) + 0.1).astype(np.float32)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(11, activation="tanh"),
                              keras.layers.Dense(3)])
    model.compile(optimizer=ScaledAdam(learning_rate=0.05, clipping_update_period=10), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=25, verbose=0)
    last = model.evaluate(x, y, verbose=0)
    assert last < 0.3 * first, (first, last)
    assert int(model.optimizer.num_skipped_steps.numpy()) == 0


def _train(opt, variables, grads_list):
    apply = tf.function(lambda g: opt.apply(g, variables))
    for grads in grads_list:
        apply([tf.constant(g, tf.float32) for g in grads])


def test_checkpoint_round_trip_resumes_identically(tmp_path):
    rng = np.random.default_rng(21)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5), np.array(0.1)]
    grads = [[rng.standard_normal(x.shape) for x in init] for _ in range(14)]
    grads[5][1][0] = np.nan  # one skipped step before the checkpoint

    def fresh():
        variables = [keras.Variable(x.astype(np.float32)) for x in init]
        opt = ScaledAdam(learning_rate=0.05, size_update_period=3, clipping_update_period=4)
        opt.build(variables)
        return variables, opt

    straight_vars, straight_opt = fresh()
    _train(straight_opt, straight_vars, grads)

    first_vars, first_opt = fresh()
    _train(first_opt, first_vars, grads[:8])
    path = tf.train.Checkpoint(optimizer=first_opt, variables=first_vars).write(str(tmp_path / "ckpt"))
    resumed_vars, resumed_opt = fresh()
    tf.train.Checkpoint(optimizer=resumed_opt, variables=resumed_vars).read(path).assert_consumed()
    assert int(resumed_opt.num_skipped_steps.numpy()) == 1
    _train(resumed_opt, resumed_vars, grads[8:])
    for a, b in zip(straight_vars, resumed_vars):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(straight_opt.variables, resumed_opt.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_gradient_accumulation_equals_mean_gradient_steps():
    rng = np.random.default_rng(8)
    init = [rng.standard_normal((3, 4)), np.array(0.3)]
    micro = [[rng.standard_normal(x.shape) for x in init] for _ in range(8)]
    acc_vars = [keras.Variable(x.astype(np.float32)) for x in init]
    acc_opt = ScaledAdam(learning_rate=0.05, clipping_update_period=3, gradient_accumulation_steps=2)
    _train(acc_opt, acc_vars, micro)
    reference = ref.RefScaledAdam([x.astype(np.float32) for x in init], lr=0.05,
                                  clipping_update_period=3)
    for k in range(4):
        mean = [(a.astype(np.float32) + b.astype(np.float32)) / 2 for a, b in zip(micro[2 * k], micro[2 * k + 1])]
        reference.step(mean, global_step=k)
    for v, r in zip(acc_vars, reference.params):
        np.testing.assert_allclose(v.numpy(), r, rtol=2e-5, atol=1e-6)


def test_sparse_embedding_gradient_is_densified():
    table = keras.Variable(np.random.default_rng(2).standard_normal((7, 3)).astype(np.float32))
    opt = ScaledAdam(learning_rate=0.05)
    ids = tf.constant([1, 4, 4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table.value, ids) ** 2)
    grad = tape.gradient(loss, table.value)
    assert isinstance(grad, tf.IndexedSlices)
    before = table.numpy().copy()
    opt.apply([grad], [table])
    reference = ref.RefScaledAdam([before], lr=0.05)
    reference.step([tf.convert_to_tensor(grad).numpy()], global_step=0)
    np.testing.assert_allclose(table.numpy(), reference.params[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(table.numpy()[[0, 2, 3, 5, 6]], before[[0, 2, 3, 5, 6]])
