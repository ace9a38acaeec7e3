"""Modified beam search for transducers (at most one symbol per frame), per utterance."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_todm.constants import BLANK_ID


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _beam_one(model, enc_proj: np.ndarray, beam: int, subnet) -> list[int]:
    """enc_proj [T', J] of one utterance (valid frames only)."""
    out, state = model.predictor.step(tf.constant([BLANK_ID]), model.predictor.init_state(1), subnet)
    # hyp: token tuple -> (log prob, predictor state, predictor projection [J])
    hyps = {(): (0.0, state, model.joiner.project_predictor(out, subnet).numpy()[0])}
    for t in range(enc_proj.shape[0]):
        keys = list(hyps)
        pred_proj = np.stack([hyps[k][2] for k in keys])  # (N, J)
        logp = _log_softmax(model.joiner.join(enc_proj[t][None], pred_proj).numpy())  # (N, V)
        scores = np.array([hyps[k][0] for k in keys])[:, None] + logp
        flat = np.argsort(-scores, axis=None, kind="stable")[:beam]
        new_hyps = {}
        for index in flat:
            i, token = divmod(int(index), scores.shape[1])
            score, state, proj = hyps[keys[i]]
            seq = keys[i]
            if token != BLANK_ID:
                seq = seq + (token,)
                out, state = model.predictor.step(tf.constant([token]), state, subnet)
                proj = model.joiner.project_predictor(out, subnet).numpy()[0]
            total = scores[i, token]
            if seq in new_hyps:
                total = np.logaddexp(new_hyps[seq][0], total)
                state, proj = new_hyps[seq][1], new_hyps[seq][2]
            new_hyps[seq] = (total, state, proj)
        hyps = new_hyps
    return list(max(hyps.items(), key=lambda kv: kv[1][0])[0])


def beam_search(model, enc, enc_lengths, beam: int = 4, subnet=None) -> list[list[int]]:
    """Modified beam search: per frame each hypothesis extends by blank or one token; the best
    `beam` (hypothesis, token) pairs survive, equal token sequences merge (log-add). Returns the
    highest-scoring token ids per utterance. With beam=1 it equals greedy search with
    max_symbols_per_frame=1."""
    if beam < 1:
        raise ValueError(f"beam_search: beam={beam}, expected >= 1")
    enc_proj = model.joiner.project_encoder(tf.convert_to_tensor(enc), subnet).numpy()
    lengths = np.asarray(enc_lengths)
    return [_beam_one(model, enc_proj[b, :lengths[b]], beam, subnet) for b in range(enc_proj.shape[0])]
