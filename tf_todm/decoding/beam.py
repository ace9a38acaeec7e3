"""Modified beam search for transducers (at most one symbol per frame), per utterance."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_todm.constants import BLANK_ID


class _Steps:
    """The predictor step + projection and the joiner of `model` as graph functions (shape-relaxed,
    so hypothesis counts 1..beam share few traces): eager Keras calls dominated decoding time."""

    def __init__(self, model, subnet):
        self.model, self.subnet = model, subnet
        self._predict = tf.function(self._predict_eager, reduce_retracing=True)
        self._join = tf.function(lambda e, p: tf.nn.log_softmax(model.joiner.join(e, p)), reduce_retracing=True)

    def _predict_eager(self, tokens, state):
        out, state = self.model.predictor.step(tokens, state, self.subnet)
        return self.model.joiner.project_predictor(out, self.subnet), state

    def predict(self, tokens, state):
        """tokens [N] -> (pred_proj [N, J] numpy, state with batch N)."""
        proj, state = self._predict(tf.constant(tokens, tf.int32), state)
        return proj.numpy(), state

    def join(self, enc_proj_t, pred_proj):
        """enc_proj_t [J], pred_proj [N, J] -> log-probabilities [N, V] (float64)."""
        return self._join(tf.constant(enc_proj_t[None]), tf.constant(pred_proj)).numpy().astype(np.float64)


def _rows(state, rows):
    return tf.nest.map_structure(lambda x: tf.gather(x, rows), state)


def _concat(states):
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, 0), *states)


class ShallowFusion:
    """Adds `weight` * log p_LM(token | tokens so far) + `length_bonus` to every non-blank
    extension and `weight` * log p_LM(end | tokens) to every final hypothesis. `lm` is a
    `tf_todm.decoding.token_ngram.TokenNgramLM` (or anything with its `log_probs`/`end`)."""

    def __init__(self, lm, weight: float, length_bonus: float = 0.0):
        self.lm, self.weight, self.length_bonus = lm, float(weight), float(length_bonus)

    def extension_scores(self, seq: tuple) -> np.ndarray:
        """[V] float64 added to the transducer's log-probabilities after `seq` (blank gets 0)."""
        scores = self.weight * self.lm.log_probs(seq)[:self.lm.end] + self.length_bonus
        scores[BLANK_ID] = 0.0
        return scores

    def end_score(self, seq: tuple) -> float:
        return self.weight * float(self.lm.log_probs(seq)[self.lm.end])


def _beam_one(steps: _Steps, enc_proj: np.ndarray, beam: int, fusion: ShallowFusion | None = None) -> list[int]:
    """enc_proj [T', J] of one utterance (valid frames only)."""
    proj, state = steps.predict([BLANK_ID], steps.model.predictor.init_state(1))
    # hyp: token tuple -> (log prob, predictor state (batch 1), predictor projection [J])
    hyps = {(): (0.0, state, proj[0])}
    for t in range(enc_proj.shape[0]):
        keys = list(hyps)
        logp = steps.join(enc_proj[t], np.stack([hyps[k][2] for k in keys]))  # (N, V)
        if fusion is not None:
            logp = logp + np.stack([fusion.extension_scores(k) for k in keys])
        scores = np.array([hyps[k][0] for k in keys])[:, None] + logp
        best = [divmod(int(index), scores.shape[1])
                for index in np.argsort(-scores, axis=None, kind="stable")[:beam]]
        # every surviving token extension advances the predictor in ONE batched step
        grow = [(i, token) for i, token in best if token != BLANK_ID]
        grown = {}
        if grow:
            g_proj, g_state = steps.predict([token for _, token in grow],
                                            _concat([hyps[keys[i]][1] for i, _ in grow]))
            grown = {pair: (_rows(g_state, [row]), g_proj[row]) for row, pair in enumerate(grow)}
        new_hyps = {}
        for i, token in best:
            score, state, proj = hyps[keys[i]]
            seq = keys[i]
            if token != BLANK_ID:
                seq = seq + (token,)
                state, proj = grown[(i, token)]
            total = scores[i, token]
            if seq in new_hyps:
                total = np.logaddexp(new_hyps[seq][0], total)
                state, proj = new_hyps[seq][1], new_hyps[seq][2]
            new_hyps[seq] = (total, state, proj)
        hyps = new_hyps

    def final(seq):
        return hyps[seq][0] + (fusion.end_score(seq) if fusion is not None else 0.0)
    return list(max(hyps, key=final))


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
    steps = _Steps(model, subnet)
    return [_beam_one(steps, enc_proj[b, :lengths[b]], beam, fusion) for b in range(enc_proj.shape[0])]
