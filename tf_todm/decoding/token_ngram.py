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

Shipping: `TokenNgramLM.to_backoff()` writes the same model in backoff form (ARPA's semantics
over token ids: for every seen (c, w) the full interpolated log p_k(w | c), for every seen context
its back-off weight log(D_k T_k(c) / N_k(c .))), which `BackoffTokenLM` reads bottom-up with the
same `log_probs` as the fitted model. `save_backoff` / `load_backoff` store it as gzipped JSON beside
a bundle's tokenizer; `tflite/stream_asr.py` reads that file without tf_todm.
"""

from __future__ import annotations

import collections
import gzip
import json
import math
from typing import Iterable, Sequence

import numpy as np

from tf_todm.constants import BLANK_ID

_BEGIN = -1  # history padding; never predicted
BACKOFF_FORMAT = "tf_todm-token-ngram-backoff/1"


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
        return _history_context(history, self.order)

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
        return _sequence_log_prob(self, tokens)

    def to_backoff(self, digits: int = 6, min_count: int = 1) -> dict:
        """The model in backoff form (module docstring), JSON-serialisable: {"format", "order",
        "vocab_size", "end_id", "begin_id", "orders": [order 1 rows, ..., order n rows]}, a row being
        [context ids, log back-off weight, next ids, log-probabilities]; logs rounded to `digits`.

        `min_count` > 1 prunes: at orders >= 2 only next symbols counted at least `min_count` times
        are stored (their interpolated probabilities unchanged), and each context's back-off weight
        is renormalised, (1 - sum of its stored p) / (1 - sum of the pruned lower order's p over
        them), so every distribution still sums to 1. With `min_count=1` that weight is
        D_k T_k(c) / N_k(c .) and the backoff form equals the fitted model."""
        if min_count < 1:
            raise ValueError(f"to_backoff: min_count={min_count}, expected >= 1")
        tables = []  # the pruned tables written so far, lowest order first
        for k in range(1, self.order + 1):
            table = {}
            for context, (words, counts, _, _) in sorted(self._tables[k - 1].items()):
                keep = counts >= min_count if k > 1 else np.ones(len(words), bool)
                if not keep.any():
                    continue  # the whole context backs off (weight 1)
                probs = self._probs(context)[words[keep]]
                lower = np.exp(_backoff_log_probs(tables, context[1:], self.vocab_size))[words[keep]]
                bow = max(1.0 - probs.sum(), 1e-12) / max(1.0 - lower.sum(), 1e-12)
                table[context] = (math.log(bow), words[keep], np.log(probs))
            tables.append(table)
        orders = [[[list(c), round(bow, digits), w.tolist(), [round(float(x), digits) for x in logs]]
                   for c, (bow, w, logs) in table.items()] for table in tables]
        return {"format": BACKOFF_FORMAT, "order": self.order, "vocab_size": self.vocab_size, "end_id": self.end,
                "begin_id": _BEGIN, "orders": orders}


def _history_context(history: Sequence[int], order: int) -> tuple:
    """The last order-1 symbols of `history`, padded with begin symbols."""
    n = order - 1
    if n == 0:
        return ()
    return ((_BEGIN,) * n + tuple(int(t) for t in history))[-n:]


def _backoff_log_probs(tables: list, context: tuple, vocab_size: int) -> np.ndarray:
    """log p(. | context) of a backoff model whose tables (order 1 first) cover orders
    1..len(context)+1: start from uniform over the tokens + end; for each order whose context (the
    last k-1 symbols) is stored, add its back-off weight and overwrite its stored next symbols.
    float64 [vocab_size + 1]; the blank entry is not meaningful (callers set it)."""
    logs = np.full(vocab_size + 1, -math.log(vocab_size))
    for k in range(1, min(len(tables), len(context) + 1) + 1):
        entry = tables[k - 1].get(context[len(context) - (k - 1):] if k > 1 else ())
        if entry is not None:
            bow, words, word_logs = entry
            logs = logs + bow
            logs[words] = word_logs
    return logs


def _sequence_log_prob(lm, tokens: Sequence[int]) -> float:
    total = 0.0
    for i, t in enumerate(list(tokens) + [lm.end]):
        total += float(lm.log_probs(tokens[:i])[t])
    return total


class BackoffTokenLM:
    """A token LM in backoff form (`TokenNgramLM.to_backoff()`), with `TokenNgramLM`'s
    `log_probs` / `end` / `order` / `sequence_log_prob`. Bottom-up: start from the uniform
    distribution; for k = 1..n, if the last k-1 symbols are a seen context, add its back-off weight
    to every entry and overwrite its seen next symbols with their stored log-probabilities."""

    def __init__(self, backoff: dict, source: str = "backoff LM"):
        if not isinstance(backoff, dict) or backoff.get("format") != BACKOFF_FORMAT:
            raise ValueError(f"{source}: not a {BACKOFF_FORMAT} model (format "
                             f"{backoff.get('format') if isinstance(backoff, dict) else type(backoff).__name__!r})")
        self.order, self.vocab_size = int(backoff["order"]), int(backoff["vocab_size"])
        self.end = int(backoff["end_id"])
        if int(backoff["begin_id"]) != _BEGIN:
            raise ValueError(f"{source}: begin_id {backoff['begin_id']}, expected {_BEGIN}")
        if len(backoff["orders"]) != self.order:
            raise ValueError(f"{source}: {len(backoff['orders'])} orders of rows, expected {self.order}")
        self._tables = [{tuple(context): (float(bow), np.asarray(words, np.int64), np.asarray(logs, np.float64))
                         for context, bow, words, logs in rows} for rows in backoff["orders"]]
        self._log_cache: dict = {}

    def log_probs(self, history: Sequence[int]) -> np.ndarray:
        """log p(. | history), float64 [vocab_size + 1]; blank -inf, end-of-sentence last (cached:
        do not modify)."""
        context = _history_context(history, self.order)
        logs = self._log_cache.get(context)
        if logs is None:
            logs = _backoff_log_probs(self._tables, context, self.vocab_size)
            logs[BLANK_ID] = -np.inf
            self._log_cache[context] = logs
        return logs

    def sequence_log_prob(self, tokens: Sequence[int]) -> float:
        """log p(tokens, end) in nats."""
        return _sequence_log_prob(self, tokens)


def save_backoff(lm: TokenNgramLM, path: str, min_count: int = 1) -> str:
    """Writes `lm.to_backoff(min_count=min_count)` as gzipped JSON (`<...>.json.gz`); returns `path`."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(lm.to_backoff(min_count=min_count), f, separators=(",", ":"))
    return path


def load_backoff(path: str) -> BackoffTokenLM:
    """Reads a `save_backoff` file; ValueError naming the file when it is not one."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a gzipped JSON token LM ({e})") from None
    return BackoffTokenLM(data, source=path)


def fit_token_lm(texts: Iterable[str], tokenizer, order: int = 4) -> TokenNgramLM:
    """A `TokenNgramLM` over `tokenizer`'s ids, fitted on `texts` (training transcripts)."""
    sequences = tokenizer.encode([t for t in texts if t and t.strip()])
    return TokenNgramLM.fit(sequences, tokenizer.vocab_size, order)


def lm_training_texts(manifest_path: str | None = None, text_path: str | None = None) -> list[str]:
    """The LM's training sentences: a JSONL manifest's transcripts (the training split), then the
    lines of a UTF-8 text file (e.g. `experiments.make_lm_text`'s corpus train text); either or
    both. Raises ValueError naming the file when it is missing or holds no sentence."""
    if not manifest_path and not text_path:
        raise ValueError("an LM needs training text: a train manifest, a text file, or both")
    texts = []
    if manifest_path:
        from tf_todm.data.manifest import read_manifest
        texts += [u.text for u in read_manifest(manifest_path)]
    if text_path:
        try:
            with open(text_path, encoding="utf-8") as f:
                lines = [line.strip() for line in f]
        except FileNotFoundError:
            raise ValueError(f"{text_path}: LM text file does not exist") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{text_path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        lines = [line for line in lines if line]
        if not lines:
            raise ValueError(f"{text_path}: LM text file holds no sentence; expected one per line")
        texts += lines
    return texts


def fit_manifest_lm(manifest_path: str, tokenizer, order: int = 4) -> TokenNgramLM:
    """`fit_token_lm` on the transcripts of a JSONL manifest (the training split)."""
    return fit_token_lm(lm_training_texts(manifest_path), tokenizer, order)
