"""Pieces shared by the companion recipes: a data-caching task base, the run helper around
`tf_todm.training.trainer.Trainer`, model loading and test-set evaluation (WER, RTF).

The recipes reuse the project's trainer (strategy, checkpoints, progress, non-finite skipping);
each recipe only supplies a task (model, inputs, one replica's gradients), like `TransducerTask`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_todm.models.per_model import per_model
from tf_todm.models.transducer import Transducer
from tf_todm.training.config import TrainConfig
from tf_todm.training.task import TransducerTask


class RecipeError(ValueError):
    """A user mistake in a recipe's configuration (one-line message naming the field)."""


class CachedDataTask(TransducerTask):
    """`TransducerTask` whose datasets are built once with cached log-mel features.

    The recipes train several small models on the same utterances; decoding the audio once per
    run (instead of once per epoch) keeps toy-scale runs dominated by the model, not by I/O.
    Every periodic evaluation is appended to `history` as
    `{"step", "epoch", "dev_wer", "train_seconds"}` (training wall time so far, evaluations
    excluded), which the benchmark uses for "epochs to reach a WER".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._datasets = {}
        self.history: list[dict] = []
        self.eval_seconds = 0.0
        self._t0: Optional[float] = None

    def make_dataset(self, input_context=None, epoch: int = 0, training: bool = True):
        from tf_todm.data.pipeline import make_dataset
        cfg = self.config
        replicas = input_context.num_replicas_in_sync if input_context else 1
        pipeline = input_context.input_pipeline_id if input_context else 0
        key = (training, replicas, pipeline)
        if key not in self._datasets:
            kwargs = ({"batch_size": cfg.batch_size} if cfg.batch_size
                      else {"max_batch_seconds": cfg.max_batch_seconds})
            utterances = self.train_utterances if training else self.dev_utterances
            self._datasets[key] = make_dataset(
                utterances, self.tokenizer, training=training, input_context=input_context,
                seed=cfg.seed, specaugment=self.specaugment() if training else None,
                cache_features=True, **kwargs)
        if self._t0 is None:
            self._t0 = time.perf_counter()
        return self._datasets[key]

    def train_seconds(self) -> float:
        """Wall time since the first dataset request, evaluations excluded."""
        if self._t0 is None:
            return 0.0
        return time.perf_counter() - self._t0 - self.eval_seconds

    def dev_wer(self, max_utterances: int) -> float:
        raise NotImplementedError

    def evaluate(self, max_utterances: int = 200, batch_size: int = 8) -> dict:
        start = time.perf_counter()
        value = self.dev_wer(max_utterances)
        self.eval_seconds += time.perf_counter() - start
        step = int(self.optimizer.iterations.numpy()) if self.optimizer is not None else 0
        spe = max(1, self.steps_per_epoch(1))
        self.history.append({"step": step, "epoch": step / spe, "dev_wer": value,
                             "train_seconds": self.train_seconds()})
        return {"dev_wer/model": value}


def run_training(task: CachedDataTask, train_config: TrainConfig, out_dir: str,
                 extra_config: Optional[dict] = None, eval_each_epoch: bool = True,
                 strategy: Optional[tf.distribute.Strategy] = None) -> dict:
    """Trains `task` with the project `Trainer` in `out_dir`; evaluates once per epoch.

    Returns the trainer's summary plus `history` (per-epoch dev WER), `train_seconds` and
    `final_dev_wer`.
    """
    from tf_todm.training.trainer import Trainer
    steps = task.steps_per_epoch(1)
    if steps < 1:
        raise RecipeError(f"{out_dir}: the training set is smaller than one batch "
                          f"(batch_size={train_config.batch_size}, "
                          f"max_batch_seconds={train_config.max_batch_seconds})")
    if eval_each_epoch:
        train_config = train_config.replace(eval_every_steps=steps)
    trainer = Trainer(task, train_config, out_dir, strategy=strategy, extra_config=extra_config)
    summary = trainer.train()
    if eval_each_epoch and (not task.history
                            or task.history[-1]["step"] != int(trainer.state.step.numpy())):
        trainer.evaluate()
    summary = dict(summary)
    summary["history"] = list(task.history)
    summary["train_seconds"] = task.train_seconds()
    summary["final_dev_wer"] = task.history[-1]["dev_wer"] if task.history else float("nan")
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump(summary["history"], f, indent=2)
    return summary


def load_transducer(run_dir: str, average_last: int = 1) -> Transducer:
    """The `Transducer` of a trainer run folder (`tf_todm.training.restore.load_trained_model`;
    `average_last` > 1 = the element-wise mean of its newest N checkpoints), with its errors as
    RecipeError."""
    from tf_todm.training.restore import RunFolderError, load_trained_model
    try:
        return load_trained_model(run_dir, average_last=average_last)
    except RunFolderError as e:
        raise RecipeError(str(e)) from None


def copy_weights(dst, src) -> None:
    """Copies every weight of `src` into `dst` (same architecture), checking shapes."""
    dst_w, src_w = dst.weights, src.weights
    if len(dst_w) != len(src_w):
        raise RecipeError(f"copy_weights: {len(src_w)} source weights, {len(dst_w)} targets")
    for d, s in zip(dst_w, src_w):
        if tuple(d.shape) != tuple(s.shape):
            raise RecipeError(f"copy_weights: {d.path} {tuple(d.shape)} != {s.path} {tuple(s.shape)}")
        d.assign(s)


def eval_dataset(utterances: Sequence, tokenizer, batch_size: int = 8):
    from tf_todm.data.pipeline import make_dataset
    return make_dataset(list(utterances), tokenizer, batch_size=batch_size, training=False, seed=0,
                        specaugment=None)


@per_model
def _encode_fn(model):
    """The model's encoder as one `tf.function` ([B, T] dynamic: one trace per model)."""
    return tf.function(lambda f, n: model.encode(f, n, training=False), input_signature=[
        tf.TensorSpec([None, None, model.config.input_dim], tf.float32),
        tf.TensorSpec([None], tf.int32)])


def evaluate_model(kind: str, model, utterances: Sequence, tokenizer, batch_size: int = 8) -> dict:
    """Float Keras test metrics: {"wer", "wer_by_domain", "rtf", "audio_seconds", "decode_seconds"}.

    `kind` is "ctc" (a `CtcModel`, greedy CTC) or "transducer" (greedy search). The utterances are
    decoded per domain (`Utterance.domain`; "" when unset) and "wer" pools them all (jiwer's
    corpus WER). RTF = wall time of encoder + decoding (feature extraction excluded) / audio
    seconds, batched on this CPU.
    """
    from tf_todm.decoding import ctc_greedy_decode, greedy_decode, transcribe
    from tf_todm.metrics import wer
    if not utterances:
        return {"wer": float("nan"), "wer_by_domain": {}, "rtf": float("nan"), "audio_seconds": 0.0,
                "decode_seconds": 0.0}
    timing = {"seconds": 0.0, "audio": 0.0}
    encode = _encode_fn(model)

    def decode_ids(batch):
        start = time.perf_counter()
        enc, enc_lengths = encode(batch["features"], batch["feature_lengths"])
        if kind == "ctc":
            ids = ctc_greedy_decode(model.ctc_logits(enc).numpy(), enc_lengths.numpy())
        else:
            ids = greedy_decode(model, enc, enc_lengths)
        timing["seconds"] += time.perf_counter() - start
        timing["audio"] += float(np.sum(batch["feature_lengths"].numpy())) * 0.01
        return ids
    domains: dict = {}
    for u in utterances:
        domains.setdefault(u.domain or "", []).append(u)
    refs, hyps, by_domain = [], [], {}
    for domain in sorted(domains):
        r, h = transcribe(eval_dataset(domains[domain], tokenizer, batch_size), tokenizer, decode_ids)
        by_domain[domain] = float(wer(r, h))
        refs += r
        hyps += h
    seconds, audio = timing["seconds"], timing["audio"]
    return {"wer": float(wer(refs, hyps)), "wer_by_domain": by_domain, "rtf": seconds / max(audio, 1e-9),
            "audio_seconds": audio, "decode_seconds": seconds}


def parse_int_list(text, field: str) -> list[int]:
    """"4,3,2" (or a list of strings) -> [4, 3, 2]; RecipeError naming `field` otherwise."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        values = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise RecipeError(f"--{field}={text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise RecipeError(f"--{field}={text!r}: expected positive integers")
    return values
