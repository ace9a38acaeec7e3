"""tf_todm.decoding: greedy (batched, graph), modified beam search (optionally fused with a token
n-gram LM), CTC greedy decoding, and the shared batches → text loop (`transcribe`)."""

from tf_todm.decoding.beam import ShallowFusion, beam_search
from tf_todm.decoding.ctc import ctc_greedy_decode
from tf_todm.decoding.greedy import greedy_decode, greedy_search
from tf_todm.decoding.token_ngram import TokenNgramLM, fit_token_lm
from tf_todm.decoding.transcribe import transcribe

__all__ = ["greedy_decode", "greedy_search", "beam_search", "ShallowFusion", "TokenNgramLM", "fit_token_lm",
           "ctc_greedy_decode", "transcribe"]
