"""tf_todm.decoding: greedy (batched, graph), modified beam search, CTC greedy decoding, and the
shared batches → text loop (`transcribe`)."""

from tf_todm.decoding.beam import beam_search
from tf_todm.decoding.ctc import ctc_greedy_decode
from tf_todm.decoding.greedy import greedy_decode, greedy_search
from tf_todm.decoding.transcribe import transcribe

__all__ = ["greedy_decode", "greedy_search", "beam_search", "ctc_greedy_decode", "transcribe"]
