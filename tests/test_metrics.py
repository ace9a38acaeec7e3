"""WER/CER vs a brute-force edit distance, plus property tests."""
import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_todm import metrics


def edit_distance(ref, hyp):
    """Levenshtein distance between two sequences (dynamic programming, unit costs)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def brute_wer(refs, hyps):
    errors = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    return errors / sum(len(r.split()) for r in refs)


def brute_cer(refs, hyps):
    refs = [" ".join(r.split()) for r in refs]
    hyps = [" ".join(h.split()) for h in hyps]
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs)


WORDS = st.sampled_from(["a", "b", "cat", "dog", "the", "ab"])
SENTENCE = st.lists(WORDS, min_size=0, max_size=6).map(" ".join)
NONEMPTY = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
PAIRS = st.lists(st.tuples(NONEMPTY, SENTENCE), min_size=1, max_size=4)


def test_hand_checked_examples():
    refs = ["the cat sat", "hello world"]
    hyps = ["the cat sat down", "hello"]
    assert metrics.wer(refs, hyps) == pytest.approx(2 / 5)
    counts = metrics.word_error_counts(refs, hyps)
    assert (counts.substitutions, counts.deletions, counts.insertions) == (0, 1, 1)
    assert metrics.cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    assert metrics.wer(["a  b "], [" a b"]) == 0.0
    assert metrics.wer(["", "a b"], ["x", "a b"]) == pytest.approx(1 / 2)


def test_errors_name_the_problem():
    with pytest.raises(metrics.MetricInputError, match="2 references but 1 hypotheses"):
        metrics.wer(["a", "b"], ["a"])
    with pytest.raises(metrics.MetricInputError, match="all empty"):
        metrics.wer(["", " "], ["a", ""])
    with pytest.raises(metrics.MetricInputError, match="list of strings"):
        metrics.cer("abc", "abd")


def check_pairs(pairs):
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    assert metrics.wer(refs, hyps) == pytest.approx(brute_wer(refs, hyps))
    assert metrics.wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))
    assert metrics.cer(refs, hyps) == pytest.approx(brute_cer(refs, hyps))
    assert metrics.wer(refs, refs) == 0.0 and metrics.cer(refs, refs) == 0.0
    assert metrics.wer(refs, hyps) >= 0.0
    # Swapping roles keeps the edit count (the denominator changes).
    if all(h.strip() for h in hyps):
        fwd = metrics.word_error_counts(refs, hyps)
        bwd = metrics.word_error_counts(hyps, refs)
        assert fwd.errors == bwd.errors
        # I - D = len(hyp) - len(ref) for every optimal alignment, so it flips sign.
        assert fwd.insertions - fwd.deletions == bwd.deletions - bwd.insertions
        assert fwd.insertions - fwd.deletions == sum(
            len(h.split()) - len(r.split()) for r, h in zip(refs, hyps))


@settings(max_examples=60, deadline=None)
@given(PAIRS)
def test_properties_fast(pairs):
    check_pairs(pairs)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(PAIRS)
def test_properties_slow(pairs):
    check_pairs(pairs)
