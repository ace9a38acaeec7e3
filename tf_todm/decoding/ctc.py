"""CTC greedy decoding."""

from __future__ import annotations

import numpy as np

from tf_todm.constants import BLANK_ID


def ctc_greedy_decode(logits, lengths) -> list[list[int]]:
    """logits [B, T', V], lengths [B] -> per utterance argmax path with repeats merged, blanks removed."""
    best = np.argmax(np.asarray(logits), axis=-1)
    result = []
    for b, n in enumerate(np.asarray(lengths)):
        path = best[b, :n]
        keep = np.ones(len(path), bool)
        keep[1:] = path[1:] != path[:-1]
        result.append([int(k) for k in path[keep] if k != BLANK_ID])
    return result
