"""Dev-set WER of a subnet, run inside the supernet (no extraction): the search's fitness."""

from __future__ import annotations

import copy
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
      calibration_dataset: training batches (same dict layout) from which a supernet with
        conv-module BatchNorm re-estimates its statistics for each subnet before decoding
        (`recalibrate_batch_norm`); required for such a supernet, ignored otherwise.
      calibration_batches: how many of its batches to read (kept in memory, reused).
    """

    def __init__(self, model: Any, dataset: Iterable[dict], tokenizer: Any,
                 decode_fn: Optional[Callable] = None, max_batches: Optional[int] = None,
                 model_config: Any = None, calibration_dataset: Optional[Iterable[dict]] = None,
                 calibration_batches: int = 8):
        import tensorflow as tf

        from tf_todm.models.batch_norm_calibration import has_batch_norm

        if decode_fn is None:
            from tf_todm.decoding import greedy_decode as decode_fn
        self.model = model
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.decode_fn = decode_fn
        self.max_batches = max_batches
        self.model_config = model_config if model_config is not None else model.config
        self.num_calls = 0
        self._calibration: Optional[list[dict]] = None
        if has_batch_norm(model):
            if calibration_dataset is None:
                raise ValueError("SupernetWerEvaluator: the supernet has conv-module BatchNorm "
                                 "(conv_norm='batch'); pass calibration_dataset (training batches) so each "
                                 "subnet's statistics are re-estimated before it is evaluated")
            self._calibration = [{k: batch[k] for k in ("features", "feature_lengths")}
                                 for batch in itertools.islice(iter(calibration_dataset), calibration_batches)]
            if not self._calibration:
                raise ValueError("SupernetWerEvaluator: calibration_dataset yielded no batches")
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

    def subset(self, dev_batches: int, calibration_batches: Optional[int] = None
               ) -> "SupernetWerEvaluator":
        """A cheaper evaluator (the screening fidelity of `screened_search`) on the first
        `dev_batches` dev batches and, for a BatchNorm supernet, the first `calibration_batches`
        calibration batches (default: all). Shares the model, the data in memory and the traced
        encoder; has its own `num_calls`."""
        if dev_batches < 1:
            raise ValueError(f"dev_batches must be >= 1, got {dev_batches}")
        if calibration_batches is not None and calibration_batches < 1:
            raise ValueError(f"calibration_batches must be >= 1, got {calibration_batches}")
        view = copy.copy(self)
        view.num_calls = 0
        view._batches = self._dev_batches()[:dev_batches]
        if self._calibration is not None and calibration_batches is not None:
            view._calibration = self._calibration[:calibration_batches]
        return view

    def on_dataset(self, dataset: Iterable[dict], max_batches: Optional[int] = None
                   ) -> "SupernetWerEvaluator":
        """The same evaluator on another dev set (e.g. a held-out split on which to re-score
        subnets chosen on this one). Shares the model, the calibration batches in memory and the
        traced encoder; has its own `num_calls`."""
        view = copy.copy(self)
        view.num_calls = 0
        view.dataset, view.max_batches, view._batches = dataset, max_batches, None
        return view

    def transcribe(self, subnet: Optional[SubnetConfig]) -> tuple[list[str], list[str]]:
        """(references, hypotheses) over the dev batches; `subnet=None` runs the full supernet."""
        from tf_todm.models.elastic import encode_subnet

        encoded = None if subnet is None else encode_subnet(self.model_config, subnet)
        if self._calibration is not None:
            from tf_todm.models.batch_norm_calibration import recalibrate_batch_norm
            recalibrate_batch_norm(self.model, self._calibration, encoded)
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
