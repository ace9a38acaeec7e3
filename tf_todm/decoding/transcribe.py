"""The decode loop every evaluator shares: batches → (references, hypotheses) as text."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence


def transcribe(batches: Iterable[dict], tokenizer, decode_ids: Callable[[dict], Sequence[Sequence[int]]]):
    """(references, hypotheses), two lists of str in batch order.

    `batches` are pipeline batches (`make_dataset`, with "text" [B] bytes); `decode_ids(batch)` returns
    one token-id sequence per utterance (greedy, beam or CTC; blanks are dropped by the tokenizer).
    Hypotheses have whitespace runs collapsed and ends stripped (`tf_todm.metrics`' convention; a
    barely trained model's consecutive word-boundary pieces decode to double spaces), so what is
    written out is exactly what is scored.
    """
    references, hypotheses = [], []
    for batch in batches:
        ids = decode_ids(batch)
        hypotheses += [" ".join(tokenizer.decode(list(h)).split()) for h in ids]
        references += [t.decode() for t in batch["text"].numpy()]
    return references, hypotheses
