"""Streaming export of a plain (extracted) Transducer: explicit-state step functions.

`StreamingTransducer` is a `tf.Module` with three named signatures, everything else (the greedy
decoding loop) lives in the app (`tf_todm.export.runtime`, `tflite/stream_asr.py`):

  encoder_step(audio [1, chunk_samples] f32 | features [1, chunk_frames, F] f32, *states)
      -> {"enc_proj": [1, C', J], *new states}      (C' encoder frames per chunk, J joiner dim)
  predictor_step(token [1] i32, *pred states) -> {"pred_proj": [1, J], *new pred states}
  joiner_step(enc_proj [1, J], pred_proj [1, J]) -> {"logits": [1, V]}

State tensors are signature inputs and outputs with the same names (the app feeds each output back
as the next input). Encoder states: `pcm_cache` (the last win-hop samples: feature framing
overlap, only with an audio front end), per block `k_cache_<b>` / `v_cache_<b>` (attention keys and
values of the last `left_chunks * C'` frames), `conv_cache_<b>` (last kernel-1 depthwise-conv
inputs), and `offset` (encoder frames emitted so far, masks the not-yet-filled caches).

Streaming truth: encoder_step over chunks equals the full-sequence encoder with the chunked
attention mask (`chunk_attention_bias`) and causal depthwise convolutions, when the pcm cache is
primed with the first win-hop samples of the utterance (`prime_samples`): the full model's frame 0
covers samples [0, win), the streaming frame 0 covers [cache, chunk) = the same samples.

The chunked block math (`conformer_block_full` / `conformer_block_step`) works on plain Keras
layers reached through a small attribute protocol (see `ConformerStreamAdapter`); a model exposing
its own `stream_step` can be wrapped by any object with the adapter's methods.
"""

from __future__ import annotations

import collections
import math

import keras
import numpy as np
import tensorflow as tf

MASK_BIAS = -30.0
"""Additive attention bias for masked keys (exp(-30) ~ 1e-13): finite so int8 calibration keeps a
usable score range, large enough to be exactly zero weight in float32 softmax terms that matter."""


# ---------------------------------------------------------------- masks and small math


def chunk_attention_bias(num_frames: int, chunk_size: int, left_chunks: int) -> np.ndarray:
    """[T, T] float32 bias: 0 where frame i may attend to j, MASK_BIAS elsewhere.

    i attends to j iff chunk(j) <= chunk(i) and chunk(j) >= chunk(i) - left_chunks
    (chunk(t) = t // chunk_size): full attention inside the chunk plus `left_chunks` chunks of left
    context, no lookahead beyond the chunk.
    """
    c = np.arange(num_frames) // chunk_size
    allowed = (c[None, :] <= c[:, None]) & (c[None, :] >= c[:, None] - left_chunks)
    return np.where(allowed, 0.0, MASK_BIAS).astype(np.float32)


def _swish(x):
    return x * tf.sigmoid(x)


def _attention_core(mha, q, k, v, bias):
    """q [1,Tq,H,dk], k/v [1,Tk,H,d], bias broadcastable to [1,H,Tq,Tk] -> [1,Tq,D] (output dense)."""
    scale = 1.0 / math.sqrt(float(mha._key_dim))
    scores = tf.einsum("bqhd,bkhd->bhqk", q * scale, k) + bias
    weights = tf.nn.softmax(scores, axis=-1)
    ctx = tf.einsum("bhqk,bkhd->bqhd", weights, v)
    return mha._output_dense(ctx)


def _ff(ln, dense_in, dense_out, x):
    return dense_out(dense_in(ln(x)))


def _conv_module_pre(block, x):
    """LayerNorm -> pointwise (2C) -> GLU; returns [B, T, C] before the depthwise conv."""
    h = block.conv_pw1(block.conv_ln(x))
    a, b = tf.split(h, 2, axis=-1)
    return a * tf.sigmoid(b)


def _conv_module_post(block, h):
    return block.conv_pw2(_swish(block.conv_norm(h)))


def conformer_block_full(block, x, chunk_size: int, left_chunks: int):
    """Full-sequence Conformer block with the chunked attention mask and causal depthwise conv.

    x: [1, T, D]. `block` exposes ff1_ln/ff1_in/ff1_out, mha_ln/mha (keras MultiHeadAttention),
    conv_ln/conv_pw1/conv_dw (DepthwiseConv1D, valid padding)/conv_norm/conv_pw2,
    ff2_ln/ff2_in/ff2_out, out_ln.
    """
    x = x + 0.5 * _ff(block.ff1_ln, block.ff1_in, block.ff1_out, x)
    h = block.mha_ln(x)
    q, k, v = block.mha._query_dense(h), block.mha._key_dense(h), block.mha._value_dense(h)
    bias = chunk_attention_bias(int(x.shape[1]), chunk_size, left_chunks)[None, None]
    x = x + _attention_core(block.mha, q, k, v, bias)
    h = _conv_module_pre(block, x)
    kernel = int(block.conv_dw.kernel_size[0])
    h = tf.pad(h, [[0, 0], [kernel - 1, 0], [0, 0]])
    x = x + _conv_module_post(block, block.conv_dw(h))
    x = x + 0.5 * _ff(block.ff2_ln, block.ff2_in, block.ff2_out, x)
    return block.out_ln(x)


def conformer_block_step(block, x, k_cache, v_cache, conv_cache, offset):
    """One chunk through a Conformer block with explicit caches.

    x: [1, C, D]; k_cache/v_cache: [1, L, H, dk] (L = left_chunks * C, oldest first);
    conv_cache: [1, kernel-1, conv_dim]; offset: [1] int32 encoder frames already processed.
    Returns (y [1, C, D], new_k, new_v, new_conv).
    """
    num_cache = int(k_cache.shape[1])
    chunk = int(x.shape[1])
    x = x + 0.5 * _ff(block.ff1_ln, block.ff1_in, block.ff1_out, x)
    h = block.mha_ln(x)
    q, k, v = block.mha._query_dense(h), block.mha._key_dense(h), block.mha._value_dense(h)
    keys = tf.concat([k_cache, k], axis=1)
    values = tf.concat([v_cache, v], axis=1)
    # cache slot p holds the frame offset - L + p: valid iff p >= L - offset.
    slot = tf.range(num_cache, dtype=tf.int32)
    valid = tf.cast(slot >= num_cache - offset[0], tf.float32)
    bias = tf.concat([(1.0 - valid) * MASK_BIAS, tf.zeros([chunk], tf.float32)], axis=0)
    x = x + _attention_core(block.mha, q, keys, values, tf.reshape(bias, [1, 1, 1, -1]))
    h = _conv_module_pre(block, x)
    h = tf.concat([conv_cache, h], axis=1)
    x = x + _conv_module_post(block, block.conv_dw(h))
    x = x + 0.5 * _ff(block.ff2_ln, block.ff2_in, block.ff2_out, x)
    y = block.out_ln(x)
    new_conv = h[:, -int(conv_cache.shape[1]):, :] if int(conv_cache.shape[1]) else conv_cache
    return y, keys[:, chunk:], values[:, chunk:], new_conv


def lstm_step(lstm: keras.layers.LSTM, x, h, c):
    """One step of a Keras LSTM from its weights (gates i, f, c, o): matmuls only, no while loop."""
    cell = lstm.cell
    z = tf.matmul(x, cell.kernel) + tf.matmul(h, cell.recurrent_kernel)
    if cell.use_bias:
        z = z + cell.bias
    i, f, g, o = tf.split(z, 4, axis=-1)
    act, rec = cell.activation, cell.recurrent_activation
    c_new = rec(f) * c + rec(i) * act(g)
    h_new = rec(o) * act(c_new)
    return h_new, c_new


# ---------------------------------------------------------------- adapter protocol


class ConformerStreamAdapter:
    """Streaming view of a plain-layer transducer (the stand-in layout; see module docstring).

    Expects `model.encoder` with `subsample_factor`, `input_proj` (Dense on S stacked frames),
    `blocks`, `chunk_size` (encoder frames), `left_chunks`, `input_dim`; `model.predictor` with
    `embedding` and `lstm`; `model.joiner` with `project_encoder`, `project_predictor`, `join`.
    """

    def __init__(self, model):
        self.model = model
        enc = model.encoder
        self.subsample = int(enc.subsample_factor)
        self.chunk_size = int(enc.chunk_size)
        self.left_chunks = int(enc.left_chunks)
        self.input_dim = int(enc.input_dim)
        self.feature_frames_per_chunk = self.chunk_size * self.subsample
        self.encoder_frames_per_chunk = self.chunk_size

    def encoder_state_specs(self) -> "collections.OrderedDict[str, tf.TensorSpec]":
        specs = collections.OrderedDict()
        cache = self.left_chunks * self.chunk_size
        for b, block in enumerate(self.model.encoder.blocks):
            heads, key_dim = int(block.mha._num_heads), int(block.mha._key_dim)
            value_dim = int(block.mha._value_dim or key_dim)
            conv_dim = int(block.conv_dw.kernel.shape[-2])
            kernel = int(block.conv_dw.kernel_size[0])
            specs[f"k_cache_{b}"] = tf.TensorSpec([1, cache, heads, key_dim], tf.float32)
            specs[f"v_cache_{b}"] = tf.TensorSpec([1, cache, heads, value_dim], tf.float32)
            specs[f"conv_cache_{b}"] = tf.TensorSpec([1, kernel - 1, conv_dim], tf.float32)
        specs["offset"] = tf.TensorSpec([1], tf.int32)
        return specs

    def _subsample(self, features):
        t = int(features.shape[1]) // self.subsample
        x = tf.reshape(features[:, : t * self.subsample], [1, t, self.subsample * self.input_dim])
        return self.model.encoder.input_proj(x)

    def encode_full(self, features):
        """[1, T, F] -> [1, T // S, D] with the chunk mask (the streaming reference)."""
        x = self._subsample(features)
        for block in self.model.encoder.blocks:
            x = conformer_block_full(block, x, self.chunk_size, self.left_chunks)
        return x

    def encoder_stream_step(self, features, states):
        x = self._subsample(features)
        new = {}
        offset = states["offset"]
        for b, block in enumerate(self.model.encoder.blocks):
            x, new[f"k_cache_{b}"], new[f"v_cache_{b}"], new[f"conv_cache_{b}"] = conformer_block_step(
                block, x, states[f"k_cache_{b}"], states[f"v_cache_{b}"], states[f"conv_cache_{b}"], offset
            )
        new["offset"] = offset + self.chunk_size
        return x, new

    def predictor_state_specs(self):
        units = int(self.model.predictor.lstm.units)
        return collections.OrderedDict(
            lstm_h=tf.TensorSpec([1, units], tf.float32), lstm_c=tf.TensorSpec([1, units], tf.float32)
        )

    def predict_full(self, labels):
        """labels [1, U] -> pred [1, U+1, P] (blank/start prepended)."""
        tokens = tf.pad(labels, [[0, 0], [1, 0]])
        return self.model.predictor.lstm(self.model.predictor.embedding(tokens))

    def predictor_stream_step(self, token, states):
        emb = self.model.predictor.embedding(token)  # [1, E]
        h, c = lstm_step(self.model.predictor.lstm, emb, states["lstm_h"], states["lstm_c"])
        return h, {"lstm_h": h, "lstm_c": c}

    @property
    def joiner(self):
        return self.model.joiner


def _block_step_relative(block, x, k_cache, v_cache, conv_cache, cache_valid):
    """One chunk through a `ConformerBlock` with an un-rotated key cache (see
    `TransducerStreamAdapter.encoder_stream_step`). x [1, t, D] -> (y, new k, new v, new conv)."""
    from tf_todm.models.attention import apply_rotary, rotary_tables

    left, t = int(k_cache.shape[1]), int(x.shape[1])
    att = block.attention
    x = x + 0.5 * block.ff1(x)
    h = att.norm(x)
    q, k, v = att._split(att.query(h)), att._split(att.key(h)), att._split(att.value(h))
    keys = tf.concat([k_cache, k], axis=1)
    values = tf.concat([v_cache, v], axis=1)
    cos, sin = rotary_tables(np.arange(left + t, dtype=np.int32), att.head_dim, att.rotary_base)  # constants
    q_rot = apply_rotary(q, cos[left:], sin[left:])
    k_rot = apply_rotary(keys, cos, sin)
    key_valid = tf.concat([cache_valid, tf.ones([t], tf.bool)], axis=0)
    mask = tf.broadcast_to(key_valid[tf.newaxis, tf.newaxis, :], [1, t, left + t])
    x = x + att.attend(q_rot, k_rot, values, mask)
    conv_out, new_conv = block.conv.stream_step(x, conv_cache)
    x = x + conv_out
    x = x + 0.5 * block.ff2(x)
    return block.final_norm(x), keys[:, t:], values[:, t:], new_conv


class TransducerStreamAdapter:
    """Streaming view of a plain `tf_todm.models.Transducer` (an extracted subnet), built on its
    layers' own `init_state` / `stream_step` (encoder) and `init_state` / `step` (predictor).

    Named encoder states: `offset` [1] int32 (encoder frames done), `subsample_cache_1/2` (conv2d
    subsampling only), then per
    block `k_cache_<b>`, `v_cache_<b>`, `conv_cache_<b>`. Predictor states: `lstm_h`/`lstm_c` or
    `context` (stateless predictor). Needs `config.chunk_size`, `left_context` and `causal_conv`.
    """

    def __init__(self, model):
        config = model.config
        if config.chunk_size is None or config.left_context is None or not config.causal_conv:
            raise ValueError(
                "TransducerStreamAdapter: the model config needs chunk_size, left_context and "
                f"causal_conv=True, got chunk_size={config.chunk_size}, left_context={config.left_context}, "
                f"causal_conv={config.causal_conv}"
            )
        self.model = model
        self.input_dim = int(config.input_dim)
        self.chunk_size = int(config.chunk_size)
        self.left_context = int(config.left_context)
        self.encoder_frames_per_chunk = self.chunk_size
        self.feature_frames_per_chunk = 4 * self.chunk_size
        self._sub_names = list(model.encoder.subsampling.state_names)
        names = ["offset", *self._sub_names]
        for b in range(len(model.encoder.blocks)):
            names += [f"k_cache_{b}", f"v_cache_{b}", f"conv_cache_{b}"]
        self._enc_names = names
        self._pred_names = ["lstm_h", "lstm_c"] if config.predictor_type == "lstm" else ["context"]

    def encoder_state_specs(self):
        init = self.model.encoder.init_state(1)
        specs = collections.OrderedDict()
        for name, t in zip(self._enc_names, init):
            shape = [1] if name == "offset" else list(t.shape)
            specs[name] = tf.TensorSpec(shape, t.dtype)
        return specs

    def encoder_stream_step(self, features, states):
        """Like `ConformerEncoder.stream_step`, but with WINDOW-RELATIVE rotary positions.

        The key cache holds un-rotated keys; each step rotates [cache + chunk] keys at positions
        0..L+t-1 and queries at L..L+t-1. Rotary scores depend only on position differences, so the
        result equals the absolute-position stream, but the rotary tables are graph constants: no
        SIN of an ever-growing position at run time, whose int8-quantized angle (range = calibrated
        utterance length) wrecked full-int8 accuracy and broke past the calibrated length.
        """
        encoder = self.model.encoder
        frames_done = tf.reshape(states["offset"], [])
        x, sub = encoder.subsampling.stream_step(features, tuple(states[n] for n in self._sub_names))
        t = int(x.shape[1])
        left = int(self.left_context)
        cache_valid = tf.range(left) >= left - frames_done  # slot j holds frame frames_done - left + j
        out = {"offset": tf.reshape(frames_done + t, [1]), **dict(zip(self._sub_names, sub))}
        for b, block in enumerate(encoder.blocks):
            x, out[f"k_cache_{b}"], out[f"v_cache_{b}"], out[f"conv_cache_{b}"] = _block_step_relative(
                block, x, states[f"k_cache_{b}"], states[f"v_cache_{b}"], states[f"conv_cache_{b}"], cache_valid)
        return x, out

    def encode_full(self, features):
        """[1, T, F] -> [1, ceil(T/4), D], the chunk-masked full-sequence reference."""
        t = int(features.shape[1])
        enc, _ = self.model.encode(features, tf.constant([t], tf.int32))
        return enc

    def predictor_state_specs(self):
        init = self.model.predictor.init_state(1)
        return collections.OrderedDict(
            (n, tf.TensorSpec(list(t.shape), t.dtype)) for n, t in zip(self._pred_names, init)
        )

    def predict_full(self, labels):
        return self.model.predict(labels)

    def predictor_stream_step(self, token, states):
        pred, new = self.model.predictor.step(token, tuple(states[n] for n in self._pred_names))
        return pred, dict(zip(self._pred_names, new))

    @property
    def joiner(self):
        return self.model.joiner


def make_adapter(model):
    """`TransducerStreamAdapter` for a `Transducer`, else `ConformerStreamAdapter` (plain layers)."""
    if hasattr(model, "config") and hasattr(getattr(model, "encoder", None), "stream_step"):
        return TransducerStreamAdapter(model)
    return ConformerStreamAdapter(model)


# ---------------------------------------------------------------- the exported module


class StreamingTransducer(tf.Module):
    """Named-signature streaming module around a stream adapter.

    Args:
      adapter: object with the `ConformerStreamAdapter` methods/attributes.
      frontend: optional Keras layer / callable PCM [1, N] f32 -> log-mel [1, T, F] with
        `win_samples`/`hop_samples` framing and no end padding (e.g. `LogMelSpectrogram` with the
        matmul DFT). With it encoder_step takes 16 kHz PCM ("audio"), else features ("features").
      win_samples, hop_samples: front-end framing (25 ms / 10 ms at 16 kHz).
    """

    def __init__(self, adapter, frontend=None, win_samples: int = 400, hop_samples: int = 160):
        super().__init__(name="streaming_transducer")
        self.adapter = adapter
        self.frontend = frontend
        self.win_samples = int(win_samples)
        self.hop_samples = int(hop_samples)
        self.prime_samples = self.win_samples - self.hop_samples if frontend is not None else 0
        self.chunk_frames = adapter.feature_frames_per_chunk
        self.chunk_samples = self.chunk_frames * self.hop_samples
        self.encoder_states = adapter.encoder_state_specs()
        if frontend is not None:
            self.encoder_states = collections.OrderedDict(
                [("pcm_cache", tf.TensorSpec([1, self.prime_samples], tf.float32))]
                + list(self.encoder_states.items())
            )
        self.predictor_states = adapter.predictor_state_specs()
        joiner = adapter.joiner
        self._variables_holder = [adapter.model]  # tracks weights for SavedModel export
        self._build_functions(joiner)

    # -- signature functions
    def _build_functions(self, joiner):
        enc_names = list(self.encoder_states)
        pred_names = list(self.predictor_states)
        if self.frontend is not None:
            main = tf.TensorSpec([1, self.chunk_samples], tf.float32, name="audio")
        else:
            main = tf.TensorSpec([1, self.chunk_frames, self.adapter.input_dim], tf.float32, name="features")
        self.input_name = main.name

        def encoder_step(x, *states):
            state = dict(zip(enc_names, states))
            if self.frontend is not None:
                pcm = tf.concat([state["pcm_cache"], x], axis=1)
                features = self.frontend(pcm)
                new_pcm = pcm[:, -self.prime_samples:]
            else:
                features = x
            enc, new = self.adapter.encoder_stream_step(features, state)
            if self.frontend is not None:
                new["pcm_cache"] = new_pcm
            out = {"enc_proj": joiner.project_encoder(enc)}
            out.update({k: new[k] for k in enc_names})
            return out

        def predictor_step(token, *states):
            pred, new = self.adapter.predictor_stream_step(token, dict(zip(pred_names, states)))
            out = {"pred_proj": joiner.project_predictor(pred)}
            out.update({k: new[k] for k in pred_names})
            return out

        def joiner_step(enc_proj, pred_proj):
            return {"logits": joiner.join(enc_proj, pred_proj)}

        named = lambda specs: [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in specs.items()]
        self.encoder_step = tf.function(encoder_step, input_signature=[main] + named(self.encoder_states))
        self.predictor_step = tf.function(
            predictor_step, input_signature=[tf.TensorSpec([1], tf.int32, name="token")] + named(self.predictor_states)
        )
        j = int(self._joiner_dim())
        self.joiner_step = tf.function(
            joiner_step,
            input_signature=[tf.TensorSpec([1, j], tf.float32, name="enc_proj"),
                             tf.TensorSpec([1, j], tf.float32, name="pred_proj")],
        )

    def _joiner_dim(self):
        pred = self.adapter.predictor_stream_step(
            tf.zeros([1], tf.int32), {k: tf.zeros(s.shape, s.dtype) for k, s in self.predictor_states.items()}
        )[0]
        return self.adapter.joiner.project_predictor(pred).shape[-1]

    def signatures(self) -> dict:
        """name -> concrete function, ready for `convert.convert`."""
        return {
            "encoder_step": self.encoder_step.get_concrete_function(),
            "predictor_step": self.predictor_step.get_concrete_function(),
            "joiner_step": self.joiner_step.get_concrete_function(),
        }

    def initial_states(self, audio: np.ndarray | None = None) -> tuple[dict, dict]:
        """Zero encoder/predictor states; with a front end, `pcm_cache` primed from `audio[:prime]`."""
        enc = {k: np.zeros(s.shape, s.dtype.as_numpy_dtype) for k, s in self.encoder_states.items()}
        pred = {k: np.zeros(s.shape, s.dtype.as_numpy_dtype) for k, s in self.predictor_states.items()}
        if self.frontend is not None and audio is not None:
            enc["pcm_cache"] = np.asarray(audio[: self.prime_samples], np.float32)[None]
        return enc, pred

    def state_info(self) -> dict:
        """JSON-able description of the signatures for the sidecar."""
        spec = lambda d: {k: {"shape": [int(x) for x in s.shape], "dtype": s.dtype.name} for k, s in d.items()}
        return {
            "encoder_input": self.input_name,
            "chunk_samples": self.chunk_samples if self.frontend is not None else None,
            "chunk_frames": self.chunk_frames,
            "encoder_frames_per_chunk": self.adapter.encoder_frames_per_chunk,
            "prime_samples": self.prime_samples,
            "win_samples": self.win_samples,
            "hop_samples": self.hop_samples,
            "encoder_states": spec(self.encoder_states),
            "predictor_states": spec(self.predictor_states),
        }


def chunk_audio(audio: np.ndarray, prime_samples: int, chunk_samples: int) -> list[np.ndarray]:
    """Splits `audio[prime:]` into [1, chunk_samples] float32 chunks, zero-padding the last one."""
    body = np.asarray(audio, np.float32)[prime_samples:]
    n = max(1, -(-len(body) // chunk_samples))
    padded = np.zeros(n * chunk_samples, np.float32)
    padded[: len(body)] = body
    return [padded[i * chunk_samples:(i + 1) * chunk_samples][None] for i in range(n)]


def stream_module(module: StreamingTransducer, audio: np.ndarray, max_symbols: int = 5, record=None,
                  max_chunks: int | None = None, max_decode_records: int | None = None):
    """Greedy streaming decode with the TF module itself (reference for TFLite parity).

    Returns (tokens, enc_proj [frames, J]). If `record` is a list, appends every signature call as
    `(signature_name, inputs dict)` -- a representative dataset with realistic states.
    `max_chunks` stops after that many encoder chunks (None: the whole utterance).
    `max_decode_records` (with `record`): once this call has recorded that many `joiner_step` and
    `predictor_step` inputs each, later chunks run the encoder only (its states do not depend on
    decoding), and the returned tokens stop there.
    """
    enc_names, pred_names = list(module.encoder_states), list(module.predictor_states)
    enc_states, pred_states = module.initial_states(audio)
    if module.frontend is not None:
        chunks = chunk_audio(audio, module.prime_samples, module.chunk_samples)
    else:
        feats = np.asarray(audio, np.float32)
        n = max(1, -(-feats.shape[0] // module.chunk_frames))
        padded = np.zeros((n * module.chunk_frames, feats.shape[1]), np.float32)
        padded[: feats.shape[0]] = feats
        chunks = [padded[None, i * module.chunk_frames:(i + 1) * module.chunk_frames] for i in range(n)]
    if max_chunks is not None:
        chunks = chunks[:max(1, int(max_chunks))]

    recorded = collections.Counter()  # this call's records per signature

    def pred_call(token):
        inputs = dict(token=np.array([token], np.int32), **pred_states)
        if record is not None:
            record.append(("predictor_step", inputs))
            recorded["predictor_step"] += 1
        out = module.predictor_step(tf.constant(inputs["token"]), *[pred_states[n] for n in pred_names])
        return {k: v.numpy() for k, v in out.items()}

    def decoding_done() -> bool:
        return (max_decode_records is not None and record is not None
                and min(recorded["joiner_step"], recorded["predictor_step"]) >= max_decode_records)

    pred = pred_call(0)
    pred_states = {k: pred[k] for k in pred_names}
    tokens, encs = [], []
    for chunk in chunks:
        if record is not None:
            record.append(("encoder_step", {module.input_name: chunk, **enc_states}))
        out = module.encoder_step(tf.constant(chunk), *[enc_states[n] for n in enc_names])
        out = {k: v.numpy() for k, v in out.items()}
        enc_states = {k: out[k] for k in enc_names}
        enc = out["enc_proj"][0]
        encs.append(enc)
        if decoding_done():
            continue
        for t in range(enc.shape[0]):
            for _ in range(max_symbols):
                if record is not None:
                    record.append(("joiner_step", {"enc_proj": enc[t:t + 1], "pred_proj": pred["pred_proj"]}))
                    recorded["joiner_step"] += 1
                logits = module.joiner_step(enc[t:t + 1], pred["pred_proj"])["logits"].numpy()
                k = int(np.argmax(logits[0]))
                if k == 0:
                    break
                tokens.append(k)
                pred = pred_call(k)
                pred_states = {kk: pred[kk] for kk in pred_names}
    return tokens, np.concatenate(encs)


def representative_dataset(module: StreamingTransducer, audios, max_samples_per_signature: int = 200):
    """Calibration samples for `convert` from real (training) audio: every signature's inputs as met
    in a streaming run, states included. Returns a zero-argument generator function.

    Every utterance contributes equally: each is streamed for its first
    q = ceil(max_samples_per_signature / len(audios)) chunks only, and gives at most q samples per
    signature (so the samples span all the speakers given, and no audio is streamed for nothing).
    """
    audios = list(audios)
    if not audios:
        raise ValueError("representative_dataset: no audio given")
    quota = -(-int(max_samples_per_signature) // len(audios))
    counts = collections.Counter()
    kept = []
    for audio in audios:
        records, taken = [], collections.Counter()
        stream_module(module, audio, record=records, max_chunks=quota, max_decode_records=quota)
        for name, inputs in records:
            if taken[name] < quota and counts[name] < max_samples_per_signature:
                taken[name] += 1
                counts[name] += 1
                kept.append((name, inputs))

    def gen():
        yield from kept

    return gen
