"""Layer math against independent numpy float64 references; masks against brute force."""

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.models.attention import RotarySelfAttention, apply_rotary, attention_mask, rotary_tables
from tf_todm.models.conv_module import ConvModule, masked_layer_norm
from tf_todm.models.subsampling import ConvSubsampling, StackSubsampling, subsampled_lengths

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("chunk_size, left_context", [(None, None), (3, None), (3, 4), (2, 0)])
def test_attention_mask_brute_force(chunk_size, left_context):
    lengths, t = np.array([11, 7, 2]), 11
    got = attention_mask(lengths, t, chunk_size, left_context).numpy()
    for b in range(3):
        for i in range(t):
            for j in range(t):
                ok = j < lengths[b]
                if chunk_size is not None:
                    ci, cj = i // chunk_size, j // chunk_size
                    ok = ok and cj <= ci
                    if left_context is not None:
                        ok = ok and j >= ci * chunk_size - left_context
                assert got[b, i, j] == ok, (b, i, j)


def test_rotary_matches_complex_rotation():
    d, t = 6, 9
    x = RNG.normal(size=(2, t, 3, d))
    positions = np.arange(5, 5 + t)
    cos, sin = rotary_tables(positions, d)
    got = apply_rotary(tf.constant(x, tf.float32), cos, sin).numpy()
    freq = 10000.0 ** (-np.arange(0, d, 2) / d)
    z = (x[..., :d // 2] + 1j * x[..., d // 2:]) * np.exp(1j * positions[None, :, None, None] * freq)
    np.testing.assert_allclose(got, np.concatenate([z.real, z.imag], -1), atol=1e-5)


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_attention_matches_numpy_reference():
    layer = RotarySelfAttention(model_dim=12, num_heads=3, head_dim=4)
    layer.build()
    for w in layer.weights:
        w.assign(RNG.normal(size=w.shape).astype(np.float32) * 0.5)
    x = RNG.normal(size=(2, 7, 12)).astype(np.float32)
    mask = attention_mask(np.array([7, 5]), 7, 3, 2)
    heads = 2
    got = layer(x, attention_mask=mask, subnet={"num_heads": tf.constant(heads), "dropout_rate": tf.constant(0.0)}).numpy()

    w = {v.path.split("/")[-2] + "/" + v.name: v.numpy().astype(np.float64) for v in layer.weights}
    h = _layer_norm(x.astype(np.float64), w["norm/gamma"], w["norm/beta"])
    proj = {n: (h @ w[f"{n}/kernel"] + w[f"{n}/bias"]).reshape(2, 7, 3, 4) for n in ("query", "key", "value")}
    pos = np.arange(7)
    freq = 10000.0 ** (-np.arange(0, 4, 2) / 4)

    def rot(a):
        z = (a[..., :2] + 1j * a[..., 2:]) * np.exp(1j * pos[None, :, None, None] * freq)
        return np.concatenate([z.real, z.imag], -1)

    q, k, v = rot(proj["query"]), rot(proj["key"]), proj["value"]
    scores = np.einsum("bihd,bjhd->bhij", q, k) / 2.0
    scores = np.where(mask.numpy()[:, None], scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = np.einsum("bhij,bjhd->bihd", p, v)[:, :, :heads].reshape(2, 7, heads * 4)
    want = out @ w["output_dense/kernel"][:heads * 4] + w["output_dense/bias"]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_masked_layer_norm_equals_layer_norm_of_active_channels():
    x = RNG.normal(size=(3, 5, 10))
    gamma, beta = RNG.normal(size=10), RNG.normal(size=10)
    mask = (np.arange(10) < 6).astype(np.float32)
    got = masked_layer_norm(tf.constant(x, tf.float32), gamma.astype(np.float32), beta.astype(np.float32),
                            tf.constant(mask)).numpy()
    np.testing.assert_allclose(got[..., :6], _layer_norm(x[..., :6], gamma[:6], beta[:6]), atol=1e-5)
    assert np.all(got[..., 6:] == 0)


def test_subsampled_lengths_match_conv_output():
    layer = ConvSubsampling(13, 4, 12)
    layer.build()
    for t in range(1, 30):
        out = layer(np.zeros((1, t, 13), np.float32))
        assert out.shape[1] == subsampled_lengths(t) == -(-t // 4)
    np.testing.assert_array_equal(subsampled_lengths(tf.constant([1, 4, 5, 8, 9])).numpy(), [1, 1, 2, 2, 3])


def test_subsampling_and_causal_conv_do_not_see_the_future():
    sub = ConvSubsampling(13, 4, 12)
    sub.build()
    x = RNG.normal(size=(1, 24, 13)).astype(np.float32)
    y = x.copy()
    y[:, 13:] += RNG.normal(size=(1, 11, 13)).astype(np.float32)  # frames >= 13 changed: encoder frames < 13 // 4 = 3 (inputs <= 12) unchanged
    np.testing.assert_allclose(sub(x)[:, :3].numpy(), sub(y)[:, :3].numpy(), atol=1e-6)
    assert not np.allclose(sub(x)[:, 3:].numpy(), sub(y)[:, 3:].numpy())
    conv = ConvModule(12, 10, 5, causal=True)
    conv.build()
    h = RNG.normal(size=(1, 9, 12)).astype(np.float32)
    g = h.copy()
    g[:, 6:] += RNG.normal(size=(1, 3, 12)).astype(np.float32)  # (a constant shift is normalised away)
    np.testing.assert_allclose(conv(h)[:, :6].numpy(), conv(g)[:, :6].numpy(), atol=1e-6)
    assert not np.allclose(conv(h)[:, 6:].numpy(), conv(g)[:, 6:].numpy())


def test_stack_subsampling_matches_numpy_and_ignores_padding():
    sub = StackSubsampling(5, 7, 6, output_scale=3.0)
    sub.build()
    mean, std = RNG.normal(size=5), RNG.uniform(0.5, 2.0, size=5)
    sub.feature_norm.set_statistics(mean, std)
    x = RNG.normal(size=(2, 10, 5)).astype(np.float32)
    lengths = np.array([10, 6], np.int32)
    got = sub(x, lengths).numpy()
    assert got.shape == (2, 3, 6)
    for b, n in enumerate(lengths):  # float64 reference, utterance by utterance
        z = (x[b, :n].astype(np.float64) - mean) / std
        z = np.concatenate([z, np.zeros((4 * subsampled_lengths(n) - n, 5))]).reshape(-1, 20)
        h = np.maximum(z @ sub.hidden.kernel.numpy() + sub.hidden.bias.numpy(), 0.0)
        want = 3.0 * (h @ sub.proj.kernel.numpy() + sub.proj.bias.numpy())
        np.testing.assert_allclose(got[b, :len(want)], want, atol=1e-4)
    noisy = x.copy()
    noisy[1, 6:] = 50.0  # padding content must not reach utterance 1's frames
    np.testing.assert_allclose(sub(noisy, lengths).numpy()[1, :2], got[1, :2], atol=1e-6)
    state = sub.init_state(2)
    streamed = [sub.stream_step(x[:, 4 * c: 4 * c + 4], state)[0].numpy() for c in range(2)]
    # float32 of magnitude ~3 through a 20-wide matmul in two kernel layouts: rtol at float32 eps scale
    np.testing.assert_allclose(np.concatenate(streamed, 1)[0], got[0, :2], rtol=1e-5, atol=1e-6)
