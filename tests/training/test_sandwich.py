"""Sandwich step: one trace for all subnets, gradients = sum of per-subnet gradients, one
optimizer step per training step, NaN/Inf steps skipped and counted. Tiny model, random batch."""
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.models.config import TransducerConfig, search_space
from tf_todm.training import sandwich
from tf_todm.training.config import TrainConfig
from tf_todm.training.task import TransducerTask, global_mean, lattice_mask
from tf_todm.training.trainer import NonFiniteLossError, Trainer

B, T, F, U, V = 3, 23, 13, 4, 7
MODEL = TransducerConfig(input_dim=F, model_dim=12, num_blocks=2, ff_dim=18, num_heads=2,
                         conv_dim=10, conv_kernel_size=3, subsampling_channels=4, predictor_dim=10,
                         joiner_dim=14, vocab_size=V, dropout=0.0)


def make_batch(seed=0, nan=False):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(B, T, F)).astype(np.float32)
    if nan:
        feats[1, 3, 2] = np.nan
    return {"features": tf.constant(feats), "feature_lengths": tf.constant([23, 20, 17], tf.int32),
            "labels": tf.constant(rng.integers(1, V, size=(B, U)), tf.int32),
            "label_lengths": tf.constant([4, 3, 2], tf.int32), "text": tf.constant(["a", "b", "c"])}


def test_sample_sandwich_is_pure_in_seed_and_step():
    space = search_space(TransducerConfig(num_blocks=4))
    a = sandwich.sample_sandwich(space, seed=5, step=17, num_random=2)
    assert a == sandwich.sample_sandwich(space, seed=5, step=17, num_random=2)
    assert a[0] == space.largest() and a[-1] == space.smallest() and len(a) == 4
    draws = {tuple(s.to_json() for s in sandwich.sample_sandwich(space, 5, k, 2)) for k in range(20)}
    assert len(draws) > 10  # different steps sample different subnets


def test_linear_rate_and_lattice_mask():
    assert sandwich.linear_rate(5, 5, 15, 0.0, 0.2) == 0.0
    assert sandwich.linear_rate(15, 5, 15, 0.0, 0.2) == pytest.approx(0.2)
    assert sandwich.linear_rate(10, 5, 15, 0.0, 0.2) == pytest.approx(0.1)
    mask = lattice_mask(tf.constant([2, 3]), tf.constant([1, 0]), 3, 3).numpy()
    expected = np.zeros((2, 3, 3))
    expected[0, :2, :2] = 1
    expected[1, :3, :1] = 1
    np.testing.assert_array_equal(mask, expected)
    assert float(global_mean(tf.constant([1.0, 2.0, 3.0]), 6)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    config = TrainConfig(loss="exact", supernet=True, num_random_subnets=1, batch_size=3,
                         optimizer="adam", base_lr=0.01, warmup_batches=0,
                         max_consecutive_nonfinite=2, kd_weight=1.0, label_loss_weight=0.5,
                         dropout_max=0.0)
    task = TransducerTask(MODEL, config)
    return Trainer(task, config, str(tmp_path_factory.mktemp("run")))


def test_gradients_are_the_sum_of_per_subnet_gradients(trainer):
    task, batch = trainer.task, make_batch(1)
    variables = task.model.trainable_variables
    subnets = task.subnets_for_step(3)
    total, scalars = task.replica_gradients(batch, subnets)
    # Independent recomputation: each subnet on its own tape.
    teacher = task.compute_losses(batch, subnets[0])["soft_targets"]
    expected = [np.zeros(v.shape, np.float64) for v in variables]
    losses = []
    for i, subnet in enumerate(subnets):
        with tf.GradientTape() as tape:
            out = task.compute_losses(batch, subnet, teacher if i else None)
        losses.append(float(out["loss"]))
        for e, g in zip(expected, tape.gradient(out["loss"], variables)):
            if g is not None:
                e += tf.convert_to_tensor(g).numpy()
    assert float(scalars["loss"]) == pytest.approx(sum(losses), rel=1e-5)
    assert "random0/kd" in scalars and "largest/kd" not in scalars
    for got, want in zip(total, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)
    # The students' KD pulls at least one variable that the label loss alone would not move equally.
    assert any(np.abs(w).sum() > 0 for w in expected)


def test_one_trace_one_optimizer_step_per_training_step(trainer):
    iterations = int(trainer.optimizer.iterations.numpy())
    seen = set()
    for step in range(4):
        configs = trainer.task.subnet_configs_for_step(step)
        seen.add(configs[1].to_json())
        _, applied = trainer.train_step(make_batch(step), trainer.task.subnets_for_step(step))
        assert applied
    assert len(seen) > 1  # different random subnets went through the same trace
    assert trainer.trace_count == 1
    assert int(trainer.optimizer.iterations.numpy()) == iterations + 4
    assert int(trainer.state.step.numpy()) == 4


def test_non_finite_steps_are_skipped_counted_and_stop_the_run(trainer):
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    iterations = int(trainer.optimizer.iterations.numpy())
    step = int(trainer.state.step.numpy())
    _, applied = trainer.train_step(make_batch(9, nan=True), trainer.task.subnets_for_step(0))
    assert not applied  # non-finite gradient (the loss may stay finite on some CPUs, test_crash_safety)
    assert int(trainer.state.num_skipped.numpy()) == 1 and int(trainer.state.step.numpy()) == step
    assert int(trainer.optimizer.iterations.numpy()) == iterations
    for b, v in zip(before, trainer.model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())
    # A finite step resets the run of failures; two in a row then stop with a clear error.
    assert trainer.train_step(make_batch(10), trainer.task.subnets_for_step(1))[1]
    trainer.train_step(make_batch(11, nan=True), trainer.task.subnets_for_step(2))
    with pytest.raises(NonFiniteLossError, match="2 consecutive steps"):
        trainer.train_step(make_batch(12, nan=True), trainer.task.subnets_for_step(3))
    assert trainer.trace_count == 1


def test_largest_only_warm_up_then_sandwich_with_two_traces(tmp_path):
    config = TrainConfig(loss="exact", supernet=True, num_random_subnets=1, batch_size=3,
                         optimizer="adam", base_lr=0.01, warmup_batches=0, dropout_max=0.0,
                         largest_only_steps=2)
    task = TransducerTask(MODEL, config)
    largest = task.space.largest()
    assert task.subnet_configs_for_step(0) == [largest] == task.subnet_configs_for_step(1)
    assert task.subnet_configs_for_step(2) == sandwich.sample_sandwich(task.space, 0, 2, 1)
    trainer = Trainer(task, config, str(tmp_path / "run"))
    scalar_names = []
    for step in range(4):
        scalars, applied = trainer.train_step(make_batch(step), task.subnets_for_step(step))
        assert applied
        scalar_names.append(sorted(k for k in scalars if k.endswith("/loss")))
    # Warm-up steps report the largest subnet alone, sandwich steps every subnet; one trace each.
    assert scalar_names[0] == scalar_names[1] == ["largest/loss"]
    assert scalar_names[2] == ["largest/loss", "random0/loss", "smallest/loss"]
    assert trainer.trace_count == 2
    with pytest.raises(Exception, match="largest_only_steps"):
        TrainConfig(largest_only_steps=-1)
