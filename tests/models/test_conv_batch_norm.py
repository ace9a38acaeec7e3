"""Conv-module BatchNorm (conv_norm="batch"): numpy float64 references for the batch and moving
statistics, padding invariance, elastic channels, extraction, streaming and per-subnet recalibration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.export.extract import extract_subnet
from tf_todm.models import Transducer, encode_subnet
from tf_todm.models.batch_norm_calibration import MomentAccumulator, _collector, recalibrate_batch_norm
from tf_todm.models.conv_module import ConvModule, masked_moments
from tf_todm.models.elastic_space import SubnetConfig
from tf_todm.models.testing import F, tiny_batch, tiny_config, tiny_space

D, C, K = 6, 5, 3


def _module(**kwargs):
    keras.utils.set_random_seed(0)
    module = ConvModule(D, C, K, norm="batch", **kwargs)
    module.build()
    return module


def _inputs(seed=0, t=9):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, t, D)).astype(np.float32)
    lengths = np.array([t, t - 4])
    time_mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)[..., None]
    return x, time_mask


def _depthwise_out(module, x, time_mask, channels=C):
    """numpy float64: the module's tensor right before its norm (LayerNorm at init, GLU, time mask,
    depthwise conv)."""
    x = x.astype(np.float64)
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    h = x @ module.pointwise_in.kernel.numpy() + module.pointwise_in.bias.numpy()
    h = h[..., :C] / (1.0 + np.exp(-h[..., C:])) * time_mask
    h[..., channels:] = 0.0
    pad = np.pad(h, [(0, 0), ((K - 1) // 2, K // 2), (0, 0)])
    kernel = module.depthwise.kernel.numpy()[:, :, 0]  # (K, C)
    out = sum(pad[:, i:i + h.shape[1]] * kernel[i] for i in range(K))
    return out + module.depthwise.bias.numpy()


def test_masked_moments_match_numpy_over_valid_frames():
    rng = np.random.default_rng(3)
    h = rng.normal(size=(3, 7, 4))
    mask = np.zeros((3, 7, 1))
    mask[0, :7], mask[1, :2], mask[2, :5] = 1, 1, 1
    valid = h[mask[..., 0] > 0]
    mean, variance, count = masked_moments(tf.constant(h, tf.float32), tf.constant(mask, tf.float32))
    np.testing.assert_allclose(mean.numpy(), valid.mean(0), atol=1e-5)
    np.testing.assert_allclose(variance.numpy(), valid.var(0), atol=1e-5)
    assert float(count) == len(valid)


def test_moment_accumulator_equals_moments_of_all_frames_also_inside_a_graph():
    rng = np.random.default_rng(4)
    parts = [rng.normal(loc=3 * i, scale=i + 1, size=(n, 3)) for i, n in enumerate([5, 11, 2])]
    everything = np.concatenate(parts)
    acc = MomentAccumulator(3)
    add = tf.function(lambda m, v, n: acc.add(m, v, n))
    for run in (acc.add, add):
        acc.reset()
        for p in parts:
            run(tf.constant(p.mean(0), tf.float32), tf.constant(p.var(0), tf.float32), tf.constant(len(p), tf.float32))
        mean, variance, count = acc.moments()
        assert count == len(everything)
        np.testing.assert_allclose(mean, everything.mean(0), rtol=1e-6)
        np.testing.assert_allclose(variance, everything.var(0), rtol=1e-6)


def test_training_mode_normalises_with_valid_frame_statistics_and_updates_moving_averages():
    module = _module(momentum=0.9)
    x, time_mask = _inputs()
    h = _depthwise_out(module, x, time_mask)
    valid = h[time_mask[..., 0] > 0]
    mean, variance = valid.mean(0), valid.var(0)
    normed = (h - mean) / np.sqrt(variance + 1e-5)
    swish = normed / (1.0 + np.exp(-normed))
    want = swish @ module.pointwise_out.kernel.numpy() + module.pointwise_out.bias.numpy()
    got = module(tf.constant(x), time_mask=tf.constant(time_mask), training=True).numpy()
    np.testing.assert_allclose(got[time_mask[..., 0] > 0], want[time_mask[..., 0] > 0], atol=1e-4)
    np.testing.assert_allclose(module.conv_norm_moving_mean.numpy(), 0.1 * mean, atol=1e-5)
    np.testing.assert_allclose(module.conv_norm_moving_variance.numpy(), 0.9 + 0.1 * variance, atol=1e-5)


def test_padding_content_changes_nothing_in_training_mode():
    module = _module()
    x, time_mask = _inputs(1)
    noisy = x.copy()
    noisy[1, -4:] = 100.0  # padded frames of the second utterance
    a = module(tf.constant(x), time_mask=tf.constant(time_mask), training=True).numpy()
    b = module(tf.constant(noisy), time_mask=tf.constant(time_mask), training=True).numpy()
    valid = time_mask[..., 0] > 0
    np.testing.assert_allclose(a[valid], b[valid], atol=1e-5)


def test_inference_uses_moving_statistics():
    module = _module()
    rng = np.random.default_rng(2)
    mean, variance = rng.normal(size=C), rng.uniform(0.5, 2.0, size=C)
    module.conv_norm_moving_mean.assign(mean.astype(np.float32))
    module.conv_norm_moving_variance.assign(variance.astype(np.float32))
    x, time_mask = _inputs(2)
    h = _depthwise_out(module, x, time_mask)
    normed = (h - mean) / np.sqrt(variance + 1e-5)
    want = (normed / (1.0 + np.exp(-normed))) @ module.pointwise_out.kernel.numpy() + module.pointwise_out.bias.numpy()
    got = module(tf.constant(x), time_mask=tf.constant(time_mask), training=False).numpy()
    valid = time_mask[..., 0] > 0
    np.testing.assert_allclose(got[valid], want[valid], atol=1e-4)


def test_a_subnet_updates_only_its_own_channels():
    module = _module(momentum=0.5)
    x, time_mask = _inputs(3)
    subnet = {"conv_dim": tf.constant(2), "dropout_rate": tf.constant(0.0)}
    module(tf.constant(x), time_mask=tf.constant(time_mask), subnet=subnet, training=True)
    mean, variance = module.conv_norm_moving_mean.numpy(), module.conv_norm_moving_variance.numpy()
    np.testing.assert_array_equal(mean[2:], 0.0)
    np.testing.assert_array_equal(variance[2:], 1.0)
    h = _depthwise_out(module, x, time_mask, channels=2)[time_mask[..., 0] > 0]
    np.testing.assert_allclose(mean[:2], 0.5 * h[:, :2].mean(0), atol=1e-5)


@pytest.fixture(scope="module")
def batch_norm_model():
    keras.utils.set_random_seed(5)
    model = Transducer(tiny_config(conv_norm="batch", subsampling_output_scale=3.0))
    rng = np.random.default_rng(5)
    for block in model.encoder.blocks:  # non-trivial statistics so slicing mistakes show
        block.conv.conv_norm_moving_mean.assign(rng.normal(size=block.conv.conv_dim).astype(np.float32))
        block.conv.conv_norm_moving_variance.assign(rng.uniform(0.3, 3.0, block.conv.conv_dim).astype(np.float32))
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_extracted_batch_norm_subnet_equals_supernet(batch_norm_model, seed):
    model = batch_norm_model
    features, lengths, _ = tiny_batch(seed)
    space = tiny_space(model.config)
    subnet_config = space.smallest() if seed == 0 else space.sample(np.random.default_rng(seed))
    got, _ = model.encode(features, lengths, subnet=encode_subnet(model.config, subnet_config))
    want, _ = extract_subnet(model, subnet_config).encode(features, lengths)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_batch_norm_streaming_equals_full_sequence():
    keras.utils.set_random_seed(7)
    config = tiny_config(chunk_size=2, left_context=3, causal_conv=True, conv_norm="batch",
                         subsampling_output_scale=3.0)
    model = Transducer(config)
    for block in model.encoder.blocks:
        block.conv.conv_norm_moving_variance.assign(np.full(block.conv.conv_dim, 2.5, np.float32))
    frames, batch = 4 * 2 * 4, 2
    features = np.random.default_rng(0).normal(size=(batch, frames, F)).astype(np.float32)
    full, _ = model.encode(features, np.full([batch], frames, np.int32))
    state = model.encoder.init_state(batch)
    outputs = []
    for c in range(4):
        out, state = model.encoder.stream_step(features[:, 8 * c: 8 * (c + 1)], state)
        outputs.append(out.numpy())
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full.numpy(), atol=1e-5)


def _batch_norm_model_and_halves(num_blocks: int, seed: int, batch_seed: int):
    """(config, model, features, lengths, the tiny batch split into two batches)."""
    keras.utils.set_random_seed(seed)
    config = tiny_config(conv_norm="batch", num_blocks=num_blocks, dropout=0.0)
    features, lengths, _ = tiny_batch(batch_seed)
    halves = [{"features": features[:2], "feature_lengths": lengths[:2]},
              {"features": features[2:], "feature_lengths": lengths[2:]}]
    return config, Transducer(config), features, lengths, halves


def test_recalibration_equals_one_big_batch_and_keeps_inactive_channels():
    """Two batches pooled == their union in one batch (the first block's conv input depends on no
    BatchNorm, so its statistics are exact either way); channels beyond the subnet stay as they were."""
    config, model, features, lengths, halves = _batch_norm_model_and_halves(1, seed=9, batch_seed=0)
    subnet_config = SubnetConfig(
        num_blocks=1, ff_dims=(10,), num_heads=(3,), conv_dims=(5,), predictor_dim=8, joiner_dim=9)
    subnet = encode_subnet(config, subnet_config)
    module = model.encoder.blocks[0].conv
    assert recalibrate_batch_norm(model, halves, subnet) == 1
    pooled = module.conv_norm_moving_mean.numpy(), module.conv_norm_moving_variance.numpy()
    assert recalibrate_batch_norm(model, [{"features": features, "feature_lengths": lengths}], subnet) == 1
    np.testing.assert_allclose(pooled[0], module.conv_norm_moving_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled[1], module.conv_norm_moving_variance.numpy(), atol=1e-5)
    np.testing.assert_array_equal(pooled[0][5:], 0.0)  # never written: initial moving mean
    np.testing.assert_array_equal(pooled[1][5:], 1.0)
    assert np.all(pooled[1][:5] > 0) and not np.allclose(pooled[1][:5], 1.0)
    assert module.moment_sink is None


def test_recalibration_traces_once_for_every_subnet_and_skips_inactive_blocks():
    config, model, _, _, batches = _batch_norm_model_and_halves(3, seed=2, batch_seed=1)
    space = tiny_space(config)
    second = model.encoder.blocks[1].conv
    before = second.conv_norm_moving_mean.numpy().copy()
    one_block = space.smallest()
    assert one_block.num_blocks == 1
    assert recalibrate_batch_norm(model, batches, encode_subnet(config, one_block)) == 1
    np.testing.assert_array_equal(second.conv_norm_moving_mean.numpy(), before)  # block 1 did not run
    traces = _collector(model)[0].experimental_get_tracing_count()
    assert traces <= 2  # batch shapes [2, T, F] then [1, T, F]: one shape-relaxed retrace at most
    assert recalibrate_batch_norm(model, batches, encode_subnet(config, space.largest())) == 3
    assert recalibrate_batch_norm(model, batches, encode_subnet(config, space.sample(np.random.default_rng(0)))) > 0
    assert not np.array_equal(second.conv_norm_moving_mean.numpy(), before)
    assert _collector(model)[0].experimental_get_tracing_count() == traces  # none per subnet


def test_recalibration_is_a_no_op_without_batch_norm():
    model = Transducer(tiny_config())
    assert recalibrate_batch_norm(model, [{"features": None, "feature_lengths": None}]) == 0
