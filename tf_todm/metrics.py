"""Word and character error rates (jiwer underneath).

Conventions: whitespace runs are collapsed and ends stripped before scoring; rates are corpus
level (total edits / total reference units), as jiwer computes them. An individual empty reference
is allowed (its hypothesis words count as insertions), but a corpus whose references are all empty
has no denominator and raises `MetricInputError`.
"""

import dataclasses

import jiwer


class MetricInputError(ValueError):
    """Raised for mismatched or unusable reference/hypothesis lists."""


@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Corpus-level edit counts (units are words for WER, characters for CER)."""
    substitutions: int
    deletions: int
    insertions: int
    reference_units: int

    @property
    def errors(self):
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self):
        return self.errors / self.reference_units


def _normalize(texts, name):
    if isinstance(texts, str):
        raise MetricInputError(f"metrics: {name} must be a list of strings, got one string")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise MetricInputError(f"metrics: {name}[{i}] must be str, got {type(text).__name__}")
        out.append(" ".join(text.split()))
    return out


def _prepare(references, hypotheses, units):
    refs = _normalize(references, "references")
    hyps = _normalize(hypotheses, "hypotheses")
    if len(refs) != len(hyps):
        raise MetricInputError(
            f"metrics: {len(refs)} references but {len(hyps)} hypotheses (must be equal)")
    total = sum(len(r.split()) if units == "words" else len(r) for r in refs)
    if total == 0:
        raise MetricInputError("metrics: references are all empty (no reference "
                               f"{units}), the error rate is undefined")
    return refs, hyps, total


def word_error_counts(references, hypotheses):
    """ErrorCounts over words (jiwer alignment)."""
    refs, hyps, total = _prepare(references, hypotheses, "words")
    out = jiwer.process_words(refs, hyps)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, total)


def char_error_counts(references, hypotheses):
    """ErrorCounts over characters, spaces included (jiwer alignment)."""
    refs, hyps, total = _prepare(references, hypotheses, "characters")
    out = jiwer.process_characters(refs, hyps)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, total)


def wer(references, hypotheses):
    """Corpus word error rate: (S + D + I) / reference words. float, may exceed 1."""
    return word_error_counts(references, hypotheses).rate


def cer(references, hypotheses):
    """Corpus character error rate: (S + D + I) / reference characters (spaces count)."""
    return char_error_counts(references, hypotheses).rate
