"""Token n-gram LM: normalisation, a hand-computed bigram, an independent slow reference over every
context, bad input, and a real SentencePiece tokenizer."""

import itertools

import numpy as np
import pytest

from tf_todm.constants import BLANK_ID
from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
from tf_todm.decoding import TokenNgramLM, fit_token_lm


def random_corpus(seed, vocab, n=40):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(1, vocab, size=rng.integers(1, 7))) for _ in range(n)]


def test_hand_computed_bigram():
    """Corpus 'a b', 'a' (a=1, b=2, end=3; bigrams <s>a x2, ab, b</s>, a</s>). Continuation
    counts of a, b, end: 1, 1, 2, so D1 = 2 / (2 + 2 * 1) = 0.5 and p1 = (.25, .25, .5); bigram
    counts 2, 1, 1, 1 give D2 = 3 / (3 + 2) = 0.6. Then p2(.|a) = (.6 * .25, .2 + .6 * .25, .2 + .6 * .5),
    p2(.|b) = (.6 * .25, .6 * .25, .4 + .6 * .5), p2(a|<s>) = 1.4 / 2 + .3 * .25."""
    lm = TokenNgramLM.fit([[1, 2], [1]], vocab_size=3, order=2)
    assert lm.discounts == pytest.approx([0.5, 0.6])
    np.testing.assert_allclose(np.exp(lm.log_probs([1]))[1:], [0.15, 0.35, 0.5], atol=1e-12)
    np.testing.assert_allclose(np.exp(lm.log_probs([2]))[1:], [0.15, 0.15, 0.7], atol=1e-12)
    assert lm.log_probs([1])[BLANK_ID] == -np.inf
    assert lm.sequence_log_prob([1, 2]) == pytest.approx(np.log(0.775) + np.log(0.35) + np.log(0.7))


def reference_prob(sequences, vocab, order, discounts, context, word):
    """Slow reference straight from the formulas: rescans the padded corpus for every count. A
    k-gram's continuation count (k < order) is the number of distinct symbols right before it in
    the order-n grams of the corpus."""
    end, begin = vocab, -1
    padded = [[begin] * (order - 1) + list(s) + [end] for s in sequences]
    top = [tuple(p[i - order + 1:i + 1]) for p in padded for i in range(order - 1, len(p))]

    def count(gram):
        k = len(gram)
        if k == order:
            return sum(1 for g in top if g == gram)
        return len({g[-k - 1] for g in top if g[order - k:] == gram})

    def p(k, ctx, w):
        if k == 0:
            return 1.0 / vocab
        ctx = ctx[len(ctx) - (k - 1):] if k > 1 else ()
        total = sum(count(ctx + (v,)) for v in range(1, vocab + 1))
        if total == 0:
            return p(k - 1, ctx, w)
        types = sum(1 for v in range(1, vocab + 1) if count(ctx + (v,)) > 0)
        d = discounts[k - 1]
        return max(count(ctx + (w,)) - d, 0) / total + d * types / total * p(k - 1, ctx, w)
    return p(order, tuple(context), word)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_matches_slow_reference_and_normalises(order):
    vocab = 5
    corpus = random_corpus(order, vocab)
    lm = TokenNgramLM.fit(corpus, vocab_size=vocab, order=order)
    histories = [h for n in range(order + 1) for h in itertools.product(range(1, vocab), repeat=n)]
    for history in histories:
        probs = np.exp(lm.log_probs(history))
        expected = [reference_prob(corpus, vocab, order, lm.discounts, lm.context(history), w)
                    for w in range(1, vocab + 1)]
        np.testing.assert_allclose(probs[1:], expected, rtol=1e-10, err_msg=str(history))
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        assert probs[BLANK_ID] == 0.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="sequence 1 holds id 0"):
        TokenNgramLM.fit([[1, 2], [0, 1]], vocab_size=3)
    with pytest.raises(ValueError, match="sequence 0 holds id 3"):
        TokenNgramLM.fit([[3]], vocab_size=3)
    with pytest.raises(ValueError, match="no training sequences"):
        TokenNgramLM.fit([], vocab_size=3)
    with pytest.raises(ValueError, match="order=0"):
        TokenNgramLM.fit([[1]], vocab_size=3, order=0)


def test_real_tokenizer_prefers_training_word_order(tmp_path):
    texts = ["turn on the lights in the kitchen", "turn off the tv please", "call anna please",
             "set a timer for ten minutes", "play some jazz in the kitchen", "what is the weather like today"] * 3
    tokenizer = Tokenizer(train_tokenizer(texts, str(tmp_path / "sp"), 30))
    lm = fit_token_lm(texts, tokenizer, order=4)
    assert lm.vocab_size == tokenizer.vocab_size
    for text in texts[:6]:
        words = text.split()
        shuffled = " ".join(words[1:] + words[:1])
        ids, shuffled_ids = tokenizer.encode([text, shuffled])
        assert lm.sequence_log_prob(ids) > lm.sequence_log_prob(shuffled_ids) + 1.0, text


@pytest.mark.parametrize("order", [1, 2, 4])
def test_backoff_form_reads_back_the_same_distributions(order, tmp_path):
    """to_backoff -> gzipped JSON -> BackoffTokenLM: the same log-probabilities (to the 6 stored
    digits) for every seen context, unseen contexts and unseen continuations."""
    from tf_todm.decoding.token_ngram import load_backoff, save_backoff
    vocab = 6
    corpus = random_corpus(11, vocab)
    lm = TokenNgramLM.fit(corpus, vocab_size=vocab, order=order)
    path = save_backoff(lm, str(tmp_path / "lm.json.gz"))
    shipped = load_backoff(path)
    assert (shipped.order, shipped.vocab_size, shipped.end) == (lm.order, lm.vocab_size, lm.end)
    histories = [seq[:i] for seq in corpus for i in range(len(seq) + 1)]
    histories += [list(h) for h in itertools.product(range(1, vocab), repeat=min(order, 3))]  # incl. unseen
    for history in histories:
        want, got = lm.log_probs(history), shipped.log_probs(history)
        assert got[BLANK_ID] == -np.inf
        np.testing.assert_allclose(got[1:], want[1:], atol=1e-5, err_msg=str(history))
    assert shipped.sequence_log_prob(corpus[0]) == pytest.approx(lm.sequence_log_prob(corpus[0]), abs=1e-4)


def test_backoff_file_errors_name_the_file(tmp_path):
    from tf_todm.decoding.token_ngram import load_backoff
    plain = tmp_path / "plain.json.gz"
    plain.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="plain.json.gz: not a gzipped JSON token LM"):
        load_backoff(str(plain))
    import gzip
    other = tmp_path / "other.json.gz"
    with gzip.open(other, "wt") as f:
        f.write('{"format": "arpa"}')
    with pytest.raises(ValueError, match="other.json.gz: not a tf_todm-token-ngram-backoff/1 model"):
        load_backoff(str(other))


def test_pruned_backoff_stays_normalised_and_keeps_the_stored_probabilities():
    """min_count=2 drops n-grams (orders >= 2) seen once; every distribution still sums to 1 (the
    back-off weights are renormalised) and the kept n-grams keep the fitted probabilities."""
    from tf_todm.decoding.token_ngram import BackoffTokenLM
    vocab, order = 6, 3
    corpus = random_corpus(5, vocab, n=80)
    lm = TokenNgramLM.fit(corpus, vocab_size=vocab, order=order)
    full, pruned = lm.to_backoff(digits=12), lm.to_backoff(digits=12, min_count=2)
    assert sum(len(r[2]) for rows in pruned["orders"] for r in rows) < sum(len(r[2]) for rows in full["orders"]
                                                                           for r in rows)
    small = BackoffTokenLM(pruned)
    kept = {(tuple(c), w): lp for rows in pruned["orders"][order - 1:] for c, _, ws, lps in rows
            for w, lp in zip(ws, lps)}
    assert kept
    for history in [list(h) for h in itertools.product(range(1, vocab), repeat=2)] + [[], [3]]:
        probs = np.exp(small.log_probs(history))
        assert probs[BLANK_ID] == 0 and np.sum(probs) == pytest.approx(1.0, abs=1e-9), history
        context = lm.context(history)
        for w in range(1, vocab + 1):
            if (context, w) in kept:
                assert small.log_probs(history)[w] == pytest.approx(lm.log_probs(history)[w], abs=1e-9)
    with pytest.raises(ValueError, match="min_count=0"):
        lm.to_backoff(min_count=0)
