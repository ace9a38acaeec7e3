"""Dev-set WER of a subnet, run inside the supernet (no extraction): the search's fitness."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Optional

from tf_todm.models.elastic_space import SubnetConfig


class SupernetWerEvaluator:
    """`evaluate(subnet) -> WER` of greedy transcripts of a dev set by the supernet run as `subnet`.

    The dev batches are read once (up to `max_batches`) and kept in memory, so every evaluation
    reuses the same features; the encoder runs in one `tf.function` whose trace serves every
    subnet (the subnet enters as the tensor dict of `encode_subnet`).

    Args:
      model: the supernet `Transducer`.
      dataset: iterable of batches `{"features" [B,T,F], "feature_lengths" [B], "text" tf.string [B]}`
        (e.g. `make_dataset(..., training=False)`).
      tokenizer: `Tokenizer` with `decode(ids) -> str`.
      decode_fn: `decode_fn(model, enc, enc_lengths, subnet=...) -> list[list[int]]`; default
        `tf_todm.decoding.greedy_decode`.
      max_batches: read at most this many batches (None: all).
      model_config: the supernet's `TransducerConfig`; default `model.config`.
    """

    def __init__(self, model: Any, dataset: Iterable[dict], tokenizer: Any,
                 decode_fn: Optional[Callable] = None, max_batches: Optional[int] = None,
                 model_config: Any = None):
        import tensorflow as tf

        if decode_fn is None:
            from tf_todm.decoding import greedy_decode as decode_fn
        self.model = model
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.decode_fn = decode_fn
        self.max_batches = max_batches
        self.model_config = model_config if model_config is not None else model.config
        self.num_calls = 0
        self._batches: Optional[list[dict]] = None
        self._encode = tf.function(
            lambda features, lengths, subnet: model.encode(features, lengths, subnet=subnet, training=False),
            reduce_retracing=True)

    def _dev_batches(self) -> list[dict]:
        if self._batches is None:
            batches = itertools.islice(iter(self.dataset), self.max_batches)
            self._batches = [{k: batch[k] for k in ("features", "feature_lengths", "text")}
                             for batch in batches]
            if not self._batches:
                raise ValueError("SupernetWerEvaluator: the dev dataset yielded no batches")
        return self._batches

    def transcribe(self, subnet: Optional[SubnetConfig]) -> tuple[list[str], list[str]]:
        """(references, hypotheses) over the dev batches; `subnet=None` runs the full supernet."""
        from tf_todm.models.elastic import encode_subnet

        encoded = None if subnet is None else encode_subnet(self.model_config, subnet)
        references, hypotheses = [], []
        for batch in self._dev_batches():
            enc, enc_lengths = self._encode(batch["features"], batch["feature_lengths"], encoded)
            for ids in self.decode_fn(self.model, enc, enc_lengths, subnet=encoded):
                hypotheses.append(self.tokenizer.decode(ids))
            texts = batch["text"]
            texts = texts.numpy() if hasattr(texts, "numpy") else texts
            references.extend(t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts)
        return references, hypotheses

    def evaluate(self, subnet: SubnetConfig) -> float:
        from tf_todm.metrics import wer

        self.num_calls += 1
        references, hypotheses = self.transcribe(subnet)
        return float(wer(references, hypotheses))
