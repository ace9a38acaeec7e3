"""Beam search over a Keras `Transducer`: `KerasSteps` (the steps protocol of
`tf_todm.decoding.beam.BeamSearch` as graph functions) and `beam_search`, batch in, token ids out."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_todm.decoding.beam import BeamSearch, ShallowFusion


class KerasSteps:
    """The predictor step + projection and the joiner of a Keras `Transducer` as graph functions
    (shape-relaxed, so hypothesis counts 1..beam share few traces: eager Keras calls dominated
    decoding time). Implements the steps protocol `BeamSearch` runs on (`initial_state`,
    `predict`, `join`); `tf_todm.export.runtime` implements it over a LiteRT model."""

    def __init__(self, model, subnet=None):
        self.model, self.subnet = model, subnet
        self._predict = tf.function(self._predict_eager, reduce_retracing=True)
        self._join = tf.function(lambda e, p: tf.nn.log_softmax(model.joiner.join(e, p)), reduce_retracing=True)

    def _predict_eager(self, tokens, state):
        out, state = self.model.predictor.step(tokens, state, self.subnet)
        return self.model.joiner.project_predictor(out, self.subnet), state

    def initial_state(self):
        """The predictor state of one hypothesis before any token."""
        return self.model.predictor.init_state(1)

    def predict(self, tokens, states):
        """tokens [N] ints, states: N one-hypothesis states -> (pred_proj [N, J] numpy, N states),
        in ONE batched predictor step."""
        proj, state = self._predict(tf.constant(tokens, tf.int32), _concat(states))
        return proj.numpy(), [_rows(state, [row]) for row in range(len(tokens))]

    def join(self, enc_proj_t, pred_proj):
        """enc_proj_t [J], pred_proj [N, J] -> log-probabilities [N, V] (float64)."""
        return self._join(tf.constant(enc_proj_t[None]), tf.constant(pred_proj)).numpy().astype(np.float64)


def _rows(state, rows):
    return tf.nest.map_structure(lambda x: tf.gather(x, rows), state)


def _concat(states):
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, 0), *states)


def beam_search(model, enc, enc_lengths, beam: int = 4, subnet=None,
                fusion: ShallowFusion | None = None) -> list[list[int]]:
    """Modified beam search: per frame each hypothesis extends by blank or one token; the best
    `beam` (hypothesis, token) pairs survive, equal token sequences merge (log-add). Returns the
    highest-scoring token ids per utterance. With beam=1 it equals greedy search with
    max_symbols_per_frame=1. `fusion` (`ShallowFusion`) adds a token LM's scores to every
    extension and its end-of-sentence score to the final ranking."""
    if beam < 1:
        raise ValueError(f"beam_search: beam={beam}, expected >= 1")
    enc_proj = model.joiner.project_encoder(tf.convert_to_tensor(enc), subnet).numpy()
    lengths = np.asarray(enc_lengths)
    steps = KerasSteps(model, subnet)
    hypotheses = []
    for b in range(enc_proj.shape[0]):
        search = BeamSearch(steps, beam, fusion)
        for t in range(lengths[b]):
            search.advance(enc_proj[b, t])
        hypotheses.append(search.best())
    return hypotheses
