"""Streaming truth: full-sequence (chunk-masked) == chunked stream == TFLite, random lengths.

Until the real Transducer lands the model is a stand-in built from plain Keras layers shaped like a
Conformer (LayerNorm, Dense, depthwise Conv1D, softmax attention, swish, GLU) with an LSTM predictor
and a matmul-DFT log-mel front end.
"""

import math
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.export import streaming

F, D, FF, H, KD, CONV, K, V, P, J = 13, 12, 19, 2, 5, 10, 5, 7, 9, 11
SUBSAMPLE, CHUNK, LEFT = 2, 3, 2
WIN, HOP, NFFT = 400, 160, 512


def make_frontend(num_mels=F):
    """PCM [1, N] -> log-mel [1, T, num_mels], 25/10 ms, no end padding, DFT as two matmuls."""
    n = np.arange(WIN)[:, None]
    k = np.arange(NFFT // 2 + 1)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)
    cos_m = tf.constant((np.cos(2 * np.pi * n * k / NFFT) * window[:, None]).astype(np.float32))
    sin_m = tf.constant((np.sin(2 * np.pi * n * k / NFFT) * window[:, None]).astype(np.float32))
    mel = tf.signal.linear_to_mel_weight_matrix(num_mels, NFFT // 2 + 1, 16000, 20.0, 7600.0)

    def frontend(pcm):
        frames = tf.signal.frame(pcm, WIN, HOP, pad_end=False)  # [1, T, WIN]
        power = tf.matmul(frames, cos_m) ** 2 + tf.matmul(frames, sin_m) ** 2
        return tf.math.log(tf.matmul(power, mel) + 1e-6)

    return frontend, (cos_m.numpy(), sin_m.numpy(), mel.numpy())


def frontend_numpy(pcm, mats):
    """float64 reference of make_frontend (independent framing loop)."""
    cos_m, sin_m, mel = (m.astype(np.float64) for m in mats)
    t = 1 + (len(pcm) - WIN) // HOP
    frames = np.stack([pcm[i * HOP:i * HOP + WIN] for i in range(t)]).astype(np.float64)
    power = (frames @ cos_m) ** 2 + (frames @ sin_m) ** 2
    return np.log(power @ mel + 1e-6)


def build_standin(seed=0, num_blocks=2):
    """A tiny plain-layer Conformer transducer (the `ConformerStreamAdapter` layout)."""
    keras.utils.set_random_seed(seed)

    def block():
        b = types.SimpleNamespace(
            ff1_ln=keras.layers.LayerNormalization(), ff1_in=keras.layers.Dense(FF, activation="swish"),
            ff1_out=keras.layers.Dense(D), mha_ln=keras.layers.LayerNormalization(),
            mha=keras.layers.MultiHeadAttention(num_heads=H, key_dim=KD),
            conv_ln=keras.layers.LayerNormalization(), conv_pw1=keras.layers.Dense(2 * CONV),
            conv_dw=keras.layers.DepthwiseConv1D(K, padding="valid"),
            conv_norm=keras.layers.LayerNormalization(), conv_pw2=keras.layers.Dense(D),
            ff2_ln=keras.layers.LayerNormalization(), ff2_in=keras.layers.Dense(FF, activation="swish"),
            ff2_out=keras.layers.Dense(D), out_ln=keras.layers.LayerNormalization(),
        )
        x = tf.zeros([1, 4, D])
        b.mha(x, x)
        # random (non-identity) norm parameters so a wrong wiring shows
        for ln in (b.ff1_ln, b.mha_ln, b.conv_ln, b.ff2_ln, b.out_ln):
            ln.build((None, D))
        b.conv_norm.build((None, CONV))
        for ln in (b.ff1_ln, b.mha_ln, b.conv_ln, b.conv_norm, b.ff2_ln, b.out_ln):
            ln.gamma.assign(1.0 + 0.2 * np.random.default_rng(seed).normal(size=ln.gamma.shape))
            ln.beta.assign(0.1 * np.random.default_rng(seed + 1).normal(size=ln.beta.shape))
        return b

    encoder = types.SimpleNamespace(
        subsample_factor=SUBSAMPLE, input_proj=keras.layers.Dense(D), blocks=[block() for _ in range(num_blocks)],
        chunk_size=CHUNK, left_chunks=LEFT, input_dim=F,
    )
    predictor = types.SimpleNamespace(embedding=keras.layers.Embedding(V, P), lstm=keras.layers.LSTM(P, return_sequences=True))
    enc_dense, pred_dense, out_dense = keras.layers.Dense(J), keras.layers.Dense(J), keras.layers.Dense(V)
    joiner = types.SimpleNamespace(
        project_encoder=enc_dense, project_predictor=pred_dense,
        join=lambda e, p: out_dense(tf.tanh(e + p)),
    )
    model = types.SimpleNamespace(encoder=encoder, predictor=predictor, joiner=joiner)
    adapter = streaming.ConformerStreamAdapter(model)
    # build every layer
    adapter.encode_full(tf.zeros([1, 2 * CHUNK * SUBSAMPLE, F]))
    pred = adapter.predict_full(tf.zeros([1, 2], tf.int32))
    joiner.join(enc_dense(tf.zeros([1, 1, D])), pred_dense(pred))
    return model, adapter


def greedy_full(adapter, features, max_symbols=3):
    """Reference greedy decoding on the full-sequence model (re-runs the whole predictor per step)."""
    enc = adapter.joiner.project_encoder(adapter.encode_full(tf.constant(features[None], tf.float32)))[0]
    tokens = []
    for t in range(enc.shape[0]):
        for _ in range(max_symbols):
            pred = adapter.predict_full(tf.constant([tokens], tf.int32, shape=[1, len(tokens)]))[:, -1]
            logits = adapter.joiner.join(enc[t:t + 1], adapter.joiner.project_predictor(pred))
            k = int(np.argmax(logits[0]))
            if k == BLANK_ID:
                break
            tokens.append(k)
    return tokens, enc.numpy()


def greedy_stream(step_encoder, step_predictor, step_joiner, enc_states, pred_states, chunks, max_symbols=3):
    """The app loop, on any callables returning dicts (tf.functions or TFLite signature runners)."""
    tokens, encs = [], []
    pred_out = step_predictor(token=np.array([BLANK_ID], np.int32), **pred_states)
    pred_states = {k: pred_out[k] for k in pred_states}
    for chunk in chunks:
        out = step_encoder(chunk, enc_states)
        enc_states = {k: out[k] for k in enc_states}
        enc = np.asarray(out["enc_proj"])[0]
        encs.append(enc)
        for t in range(enc.shape[0]):
            for _ in range(max_symbols):
                logits = np.asarray(step_joiner(enc_proj=enc[t:t + 1], pred_proj=np.asarray(pred_out["pred_proj"]))["logits"])
                k = int(np.argmax(logits[0]))
                if k == BLANK_ID:
                    break
                tokens.append(k)
                pred_out = step_predictor(token=np.array([k], np.int32), **pred_states)
                pred_states = {kk: pred_out[kk] for kk in pred_states}
    return tokens, np.concatenate(encs)


def tf_callables(module):
    enc_names = list(module.encoder_states)
    pred_names = list(module.predictor_states)
    enc = lambda chunk, st: {k: v.numpy() for k, v in module.encoder_step(tf.constant(chunk), *[st[n] for n in enc_names]).items()}
    pred = lambda token, **st: {k: v.numpy() for k, v in module.predictor_step(tf.constant(token), *[st[n] for n in pred_names]).items()}
    join = lambda enc_proj, pred_proj: {k: v.numpy() for k, v in module.joiner_step(enc_proj, pred_proj).items()}
    return enc, pred, join


@pytest.fixture(scope="module")
def standin():
    model, adapter = build_standin()
    frontend, mats = make_frontend()
    return model, adapter, frontend, mats


def test_chunk_attention_bias_brute_force():
    bias = chunk_attention_bias = streaming.chunk_attention_bias(11, 3, 1)
    for i in range(11):
        for j in range(11):
            ok = (j // 3 <= i // 3) and (j // 3 >= i // 3 - 1)
            assert (bias[i, j] == 0) == ok


def test_manual_attention_equals_keras_mha_with_mask(standin):
    _, adapter, _, _ = standin
    block = adapter.model.encoder.blocks[0]
    x = tf.random.stateless_normal([1, 10, D], seed=[1, 2])
    allowed = streaming.chunk_attention_bias(10, CHUNK, LEFT) == 0
    ref = block.mha(x, x, attention_mask=allowed[None])
    q, k, v = block.mha._query_dense(x), block.mha._key_dense(x), block.mha._value_dense(x)
    ours = streaming._attention_core(block.mha, q, k, v, streaming.chunk_attention_bias(10, CHUNK, LEFT)[None, None])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)


def test_lstm_step_equals_keras_lstm(standin):
    _, adapter, _, _ = standin
    lstm = adapter.model.predictor.lstm
    x = tf.random.stateless_normal([1, 4, P], seed=[3, 4])
    ref = lstm(x).numpy()
    h = c = tf.zeros([1, P])
    for t in range(4):
        h, c = streaming.lstm_step(lstm, x[:, t], h, c)
        np.testing.assert_allclose(h.numpy(), ref[:, t], atol=1e-5)


def test_frontend_matches_float64_reference(standin):
    *_, frontend, mats = standin
    pcm = np.random.default_rng(5).normal(scale=0.1, size=2000).astype(np.float32)
    ours = frontend(tf.constant(pcm[None]))[0].numpy()
    np.testing.assert_allclose(ours, frontend_numpy(pcm.astype(np.float64), mats), atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_equals_full_sequence_random_lengths(standin, seed):
    """encoder_step over PCM chunks == full chunk-masked model on the same (padded) audio."""
    _, adapter, frontend, _ = standin
    module = streaming.StreamingTransducer(adapter, frontend=frontend)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(module.prime_samples + 1, module.prime_samples + 7 * module.chunk_samples))
    audio = rng.normal(scale=0.1, size=n).astype(np.float32)
    chunks = streaming.chunk_audio(audio, module.prime_samples, module.chunk_samples)
    padded = np.concatenate([audio[:module.prime_samples]] + [c[0] for c in chunks])
    features = frontend(tf.constant(padded[None]))[0].numpy()
    assert features.shape[0] == len(chunks) * module.chunk_frames
    ref_tokens, ref_enc = greedy_full(adapter, features)
    enc_states, pred_states = module.initial_states(audio)
    tokens, enc = greedy_stream(*tf_callables(module), enc_states, pred_states, chunks)
    np.testing.assert_allclose(enc, ref_enc, atol=1e-4)
    assert tokens == ref_tokens and len(tokens) > 0


def test_stream_without_cache_differs(standin):
    """The caches matter: zeroing them between chunks changes the output (the test can fail)."""
    _, adapter, _, _ = standin
    module = streaming.StreamingTransducer(adapter)
    feats = np.random.default_rng(9).normal(size=(3 * module.chunk_frames, F)).astype(np.float32)
    ref = adapter.joiner.project_encoder(adapter.encode_full(tf.constant(feats[None]))).numpy()[0]
    enc_fn, _, _ = tf_callables(module)
    zero, _ = module.initial_states()
    outs, states = [], dict(zero)
    for i in range(3):
        chunk = feats[None, i * module.chunk_frames:(i + 1) * module.chunk_frames]
        out = enc_fn(chunk, states)
        outs.append(out["enc_proj"][0])
        states = {k: out[k] for k in zero}
    np.testing.assert_allclose(np.concatenate(outs), ref, atol=1e-4)
    broken = np.concatenate([enc_fn(feats[None, i * module.chunk_frames:(i + 1) * module.chunk_frames], dict(zero))["enc_proj"][0] for i in range(3)])
    assert np.abs(broken - ref).max() > 1e-2
