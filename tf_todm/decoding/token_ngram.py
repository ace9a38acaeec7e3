"""Token n-gram language model (interpolated Kneser-Ney) for shallow fusion in beam search.

The model predicts the transducer's own token ids (SentencePiece pieces; blank excluded) and an
end-of-sentence symbol. It is fitted on training transcripts only, so it carries no dev or test
text. Written here because the maintained n-gram toolkits either need a C++ build (KenLM's `lmplz`)
or are far too slow to query per beam step (`nltk.lm`); the estimator is Chen & Goodman's
interpolated Kneser-Ney with one discount per order, D_k = n1 / (n1 + 2 n2) (Ney et al.).

Probabilities, for an order-n model and a context c of the last n-1 symbols (histories are padded
with n-1 begin symbols):

    p_k(w | c) = max(N_k(c w) - D_k, 0) / N_k(c .) + D_k * T_k(c) / N_k(c .) * p_{k-1}(w | c[1:])
    p_0(w)     = 1 / (V - 1 + 1)              (uniform over the V - 1 tokens and end-of-sentence)

where N_n are raw counts, N_k (k < n) continuation counts (how many distinct symbols precede the
k-gram), N_k(c .) their sum over w and T_k(c) the number of w with N_k(c w) > 0; a context never
seen at order k backs off to p_{k-1} entirely. Every p_k(. | c) sums to 1 over tokens + end.
"""

from __future__ import annotations

import collections
from typing import Iterable, Sequence

import numpy as np

from tf_todm.constants import BLANK_ID

_BEGIN = -1  # history padding; never predicted


def _discount(counts: Iterable[int]) -> float:
    """Ney's discount n1 / (n1 + 2 n2) from the count-of-counts of one order, in [0.1, 0.9]."""
    histogram = collections.Counter(counts)
    n1, n2 = histogram.get(1, 0), histogram.get(2, 0)
    if n1 == 0 or n2 == 0:
        return 0.5
    return float(min(0.9, max(0.1, n1 / (n1 + 2.0 * n2))))


class TokenNgramLM:
    """Interpolated Kneser-Ney LM over token ids 1..vocab_size-1 plus end-of-sentence.

    `log_probs(history)` returns float64 [vocab_size + 1]: entry 0 (blank) is -inf, entries
    1..vocab_size-1 are the tokens, the last entry is end-of-sentence. Build with `fit`.
    """

    def __init__(self, order: int, vocab_size: int, tables: list, discounts: Sequence[float]):
        self.order, self.vocab_size = int(order), int(vocab_size)
        self.end = self.vocab_size  # index of end-of-sentence in the output vector
        # tables[k-1]: context (tuple, len k-1) -> (words int array, counts float array, total, types)
        self._tables = tables
        self.discounts = [float(d) for d in discounts]
        self._cache: dict = {}  # context -> probabilities
        self._log_cache: dict = {}  # context -> log-probabilities (read once per hypothesis and frame)

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[int]], vocab_size: int, order: int = 4) -> "TokenNgramLM":
        """Fits on token-id sequences (one per transcript; ids in 1..vocab_size-1)."""
        if order < 1:
            raise ValueError(f"TokenNgramLM.fit: order={order}, expected >= 1")
        if vocab_size < 2:
            raise ValueError(f"TokenNgramLM.fit: vocab_size={vocab_size}, expected >= 2")
        end = int(vocab_size)
        top = collections.Counter()
        num = 0
        for seq in sequences:
            seq = [int(t) for t in seq]
            bad = [t for t in seq if not 1 <= t < vocab_size]
            if bad:
                raise ValueError(f"TokenNgramLM.fit: sequence {num} holds id {bad[0]}, "
                                 f"expected ids in 1..{vocab_size - 1} (0 is blank)")
            padded = [_BEGIN] * (order - 1) + seq + [end]
            for i in range(order - 1, len(padded)):
                top[tuple(padded[i - order + 1:i + 1])] += 1
            num += 1
        if not num:
            raise ValueError("TokenNgramLM.fit: no training sequences")
        counts = {order: top}
        for k in range(order - 1, 0, -1):  # continuation counts: distinct left neighbours
            counts[k] = collections.Counter(gram[1:] for gram in counts[k + 1])
        tables, discounts = [], []
        for k in range(1, order + 1):
            discounts.append(_discount(counts[k].values()))
            by_context = collections.defaultdict(list)
            for gram, c in counts[k].items():
                by_context[gram[:-1]].append((gram[-1], c))
            tables.append({ctx: (np.array([w for w, _ in items]), np.array([c for _, c in items], np.float64),
                                 float(sum(c for _, c in items)), len(items))
                           for ctx, items in by_context.items()})
        return cls(order, vocab_size, tables, discounts)

    def _probs(self, context: tuple) -> np.ndarray:
        """p_k(. | context) with k = len(context) + 1, float64 [vocab_size + 1] (blank 0)."""
        if context in self._cache:
            return self._cache[context]
        k = len(context) + 1
        if k == 1:
            lower = np.full(self.vocab_size + 1, 1.0 / self.vocab_size)  # tokens 1..V-1 and end
            lower[BLANK_ID] = 0.0
        else:
            lower = self._probs(context[1:])
        entry = self._tables[k - 1].get(context)
        if entry is None:
            probs = lower
        else:
            words, counts, total, types = entry
            d = self.discounts[k - 1]
            probs = d * types / total * lower
            probs[words] += np.maximum(counts - d, 0.0) / total
        self._cache[context] = probs
        return probs

    def context(self, history: Sequence[int]) -> tuple:
        """The last order-1 symbols of `history`, padded with begin symbols."""
        n = self.order - 1
        if n == 0:
            return ()
        padded = (_BEGIN,) * n + tuple(int(t) for t in history)
        return padded[-n:]

    def log_probs(self, history: Sequence[int]) -> np.ndarray:
        """log p(. | history), float64 [vocab_size + 1]; blank -inf, end-of-sentence last. The
        returned array is cached: do not modify it."""
        context = self.context(history)
        logs = self._log_cache.get(context)
        if logs is None:
            with np.errstate(divide="ignore"):
                logs = self._log_cache[context] = np.log(self._probs(context))
        return logs

    def sequence_log_prob(self, tokens: Sequence[int]) -> float:
        """log p(tokens, end) in nats."""
        total = 0.0
        for i, t in enumerate(list(tokens) + [self.end]):
            total += float(self.log_probs(tokens[:i])[t])
        return total


def fit_token_lm(texts: Iterable[str], tokenizer, order: int = 4) -> TokenNgramLM:
    """A `TokenNgramLM` over `tokenizer`'s ids, fitted on `texts` (training transcripts)."""
    sequences = tokenizer.encode([t for t in texts if t and t.strip()])
    return TokenNgramLM.fit(sequences, tokenizer.vocab_size, order)
