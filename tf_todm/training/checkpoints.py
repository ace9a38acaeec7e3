"""Resumable training state: model, optimizer, step, data position; atomic side files.

The data order is a pure function of `(seed, epoch)` and subnet sampling a pure function of
`(seed, step)`, so the state to resume a run exactly is: weights, optimizer slots, `step`,
`epoch` and `batch_in_epoch` (batches of this epoch already consumed, skipped on resume).

`tf.train.CheckpointManager` writes each checkpoint's shards under temporary names and renames
them, and rewrites its `checkpoint` index file atomically, so a run killed at any moment leaves the
previous checkpoint loadable. JSON side files go through `write_json_atomic` (temp + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional

import tensorflow as tf


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as JSON to `path` via a temp file in the same directory + `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class TrainState(tf.Module):
    """Counters saved with the weights. All int64 scalars (non-trainable variables).

    Attributes:
      step: optimizer steps taken (skipped non-finite steps excluded).
      epoch: current epoch (0-based).
      batch_in_epoch: batches of `epoch` already consumed (applied or skipped).
      num_skipped: total steps skipped because the loss or a gradient was not finite.
    """

    def __init__(self):
        super().__init__(name="train_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch_in_epoch")
        self.num_skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_skipped")

    def as_dict(self) -> dict:
        return {k: int(getattr(self, k).numpy()) for k in
                ("step", "epoch", "batch_in_epoch", "num_skipped")}


class Checkpointer:
    """`tf.train.Checkpoint` of (model, optimizer, state) + a `CheckpointManager`.

    Args:
      directory: checkpoint folder (`<run>/ckpt`).
      model, optimizer, state: objects to save (the optimizer may be None).
      max_to_keep: checkpoints kept.
      is_chief: in multi-worker training every worker must call `save` (the save is collective);
        non-chief workers write to a private temporary folder that is deleted afterwards.
    """

    def __init__(self, directory: str, model, optimizer, state: TrainState, max_to_keep: int = 3,
                 is_chief: bool = True):
        self.directory = directory
        self.is_chief = is_chief
        objects = {"model": model, "state": state}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.state = state
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> Optional[str]:
        """Restores the newest checkpoint if there is one; returns its path (or None)."""
        path = self.latest
        if path is None:
            return None
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self) -> Optional[str]:
        """Saves (collectively); returns the chief's checkpoint path (None on other workers)."""
        if self.is_chief:
            return self.manager.save(checkpoint_number=int(self.state.step.numpy()))
        tmp = tempfile.mkdtemp(prefix="ckpt_worker_")
        try:
            self.checkpoint.write(os.path.join(tmp, "ckpt"))
        finally:
            tf.io.gfile.rmtree(tmp)
        return None
