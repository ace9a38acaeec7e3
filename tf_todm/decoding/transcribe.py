"""The decode loop every evaluator shares: batches → (references, hypotheses) as text."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence


def transcribe(batches: Iterable[dict], tokenizer, decode_ids: Callable[[dict], Sequence[Sequence[int]]]):
    """(references, hypotheses), two lists of str in batch order.

    `batches` are pipeline batches (`make_dataset`, with "text" [B] bytes); `decode_ids(batch)` returns
    one token-id sequence per utterance (greedy, beam or CTC; blanks are dropped by the tokenizer).
    """
    references, hypotheses = [], []
    for batch in batches:
        ids = decode_ids(batch)
        hypotheses += [tokenizer.decode(list(h)) for h in ids]
        references += [t.decode() for t in batch["text"].numpy()]
    return references, hypotheses
