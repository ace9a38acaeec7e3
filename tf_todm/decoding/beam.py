"""Modified beam search for transducers (at most one symbol per frame), streaming: `BeamSearch`
advances one encoder frame at a time over any predictor/joiner implementation (the steps protocol:
`initial_state()`, `predict(tokens, states)`, `join(enc_proj_t, pred_proj)`), optionally fused with
a token LM (`ShallowFusion`). NumPy only, so the on-device runner (`tf_todm.export.runtime`) uses it
without importing TensorFlow; the Keras steps and the batched entry are in `beam_keras`."""

from __future__ import annotations

import numpy as np

from tf_todm.constants import BLANK_ID


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


class BeamSearch:
    """Modified beam search (at most one symbol per frame) over a stream of encoder frames: call
    `advance` once per frame (`enc_proj_t` [J], the joiner's encoder projection), `best()` at any
    time. Per frame every hypothesis extends by blank or one token; the best `beam`
    (hypothesis, token) pairs survive and equal token sequences merge (log-add). `steps` runs the
    predictor and joiner (`KerasSteps`, or the LiteRT steps of `tf_todm.export.runtime`);
    `fusion` (`ShallowFusion`) adds a token LM's scores."""

    def __init__(self, steps, beam: int, fusion: ShallowFusion | None = None):
        if beam < 1:
            raise ValueError(f"BeamSearch: beam={beam}, expected >= 1")
        self.steps, self.beam, self.fusion = steps, int(beam), fusion
        proj, states = steps.predict([BLANK_ID], [steps.initial_state()])
        # hypothesis: token tuple -> (log prob, predictor state (one hypothesis), projection [J])
        self.hyps = {(): (0.0, states[0], proj[0])}

    def advance(self, enc_proj_t: np.ndarray) -> None:
        hyps, steps = self.hyps, self.steps
        keys = list(hyps)
        logp = steps.join(enc_proj_t, np.stack([hyps[k][2] for k in keys]))  # (N, V)
        if self.fusion is not None:
            logp = logp + np.stack([self.fusion.extension_scores(k) for k in keys])
        scores = np.array([hyps[k][0] for k in keys])[:, None] + logp
        best = [divmod(int(index), scores.shape[1])
                for index in np.argsort(-scores, axis=None, kind="stable")[:self.beam]]
        # every surviving token extension advances the predictor in one `predict` call
        grow = [(i, token) for i, token in best if token != BLANK_ID]
        grown = {}
        if grow:
            g_proj, g_states = steps.predict([token for _, token in grow], [hyps[keys[i]][1] for i, _ in grow])
            grown = {pair: (g_states[row], g_proj[row]) for row, pair in enumerate(grow)}
        new_hyps = {}
        for i, token in best:
            _, state, proj = hyps[keys[i]]
            seq = keys[i]
            if token != BLANK_ID:
                seq = seq + (token,)
                state, proj = grown[(i, token)]
            total = scores[i, token]
            if seq in new_hyps:
                total = np.logaddexp(new_hyps[seq][0], total)
                state, proj = new_hyps[seq][1], new_hyps[seq][2]
            new_hyps[seq] = (total, state, proj)
        self.hyps = new_hyps

    def best(self) -> list[int]:
        """Token ids of the highest-scoring hypothesis (with the LM's end-of-sentence score)."""
        def final(seq):
            return self.hyps[seq][0] + (self.fusion.end_score(seq) if self.fusion is not None else 0.0)
        return list(max(self.hyps, key=final))
