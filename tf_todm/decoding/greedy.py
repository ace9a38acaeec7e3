"""Batched greedy transducer decoding (graph-friendly; the reference for the TFLite runner)."""

from __future__ import annotations

import tensorflow as tf

from tf_todm.constants import BLANK_ID


def _select(emit, new, old):
    """Per-utterance choice between two tensors whose leading axis is the batch."""
    shape = tf.concat([tf.shape(emit), tf.ones([tf.rank(new) - 1], tf.int32)], axis=0)
    return tf.where(tf.reshape(emit, shape), new, old)


def greedy_search(model, enc, enc_lengths, subnet=None, max_symbols_per_frame: int = 3):
    """Tensor greedy search.

    Per frame t < enc_lengths[b], emit argmax tokens until blank or `max_symbols_per_frame`
    symbols; after a non-blank the predictor advances one step (with `model.predictor.step`).
    Args: enc [B, T', D] encoder output; enc_lengths int32 [B]; subnet: None or `encode_subnet` dict.
    Returns: (tokens int32 [B, T' * max_symbols_per_frame] padded with -1, num_tokens int32 [B]).
    """
    enc_lengths = tf.cast(enc_lengths, tf.int32)
    batch, frames = tf.shape(enc)[0], tf.shape(enc)[1]
    capacity = frames * max_symbols_per_frame
    enc_proj = model.joiner.project_encoder(enc, subnet)  # (B, T', J)
    pred_out, state = model.predictor.step(tf.fill([batch], BLANK_ID), model.predictor.init_state(batch), subnet)
    pred_proj = model.joiner.project_predictor(pred_out, subnet)  # (B, J)
    tokens = tf.fill([batch, capacity], -1)
    counts = tf.zeros([batch], tf.int32)

    def body(t, pred_proj, state, tokens, counts):
        frame = enc_proj[:, t]
        active = t < enc_lengths
        for _ in range(max_symbols_per_frame):
            best = tf.argmax(model.joiner.join(frame, pred_proj), axis=-1, output_type=tf.int32)
            emit = tf.logical_and(active, best != BLANK_ID)
            new_out, new_state = model.predictor.step(best, state, subnet)
            pred_proj = _select(emit, model.joiner.project_predictor(new_out, subnet), pred_proj)
            state = tuple(_select(emit, n, o) for n, o in zip(new_state, state))
            write = tf.logical_and(tf.one_hot(counts, capacity, on_value=True, off_value=False), emit[:, None])
            tokens = tf.where(write, best[:, None], tokens)
            counts += tf.cast(emit, tf.int32)
            active = emit
        return t + 1, pred_proj, state, tokens, counts

    _, _, _, tokens, counts = tf.while_loop(
        lambda t, *_: t < frames, body, (tf.constant(0), pred_proj, tuple(state), tokens, counts))
    return tokens, counts


_greedy_graph = tf.function(greedy_search, reduce_retracing=True)


def greedy_decode(model, enc, enc_lengths, subnet=None, max_symbols_per_frame: int = 3) -> list[list[int]]:
    """Batched greedy decoding -> token ids per utterance (blank removed)."""
    tokens, counts = _greedy_graph(model, tf.convert_to_tensor(enc), tf.convert_to_tensor(enc_lengths),
                                   subnet, max_symbols_per_frame)
    tokens, counts = tokens.numpy(), counts.numpy()
    return [tokens[b, :counts[b]].tolist() for b in range(tokens.shape[0])]
