"""tf_todm.decoding: greedy (batched, graph), modified beam search (optionally fused with a token
n-gram LM), CTC greedy decoding, and the shared batches → text loop (`transcribe`).

Names resolve lazily (PEP 562), so the NumPy-only parts (`BeamSearch`, `ShallowFusion`,
`TokenNgramLM`) load without TensorFlow: the on-device runner imports them in an app-like process."""

import importlib

_WHERE = {
    "BeamSearch": "beam", "ShallowFusion": "beam",
    "KerasSteps": "beam_keras", "beam_search": "beam_keras",
    "ctc_greedy_decode": "ctc",
    "greedy_decode": "greedy", "greedy_search": "greedy",
    "TokenNgramLM": "token_ngram", "fit_token_lm": "token_ngram",
    "transcribe": "transcribe",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'tf_todm.decoding' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tf_todm.decoding.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
