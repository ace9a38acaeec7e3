"""Resumable training state: model, optimizer, step, data position; atomic side files.

The data order is a pure function of `(seed, epoch)` and subnet sampling a pure function of
`(seed, step)`, so the state to resume a run exactly is: weights, optimizer slots, `step`,
`epoch` and `batch_in_epoch` (batches of this epoch already consumed, skipped on resume).

A save is ordered so that a run killed at any moment leaves every listed checkpoint loadable:
1. `tf.train.Checkpoint.write` writes `ckpt-<step>` (shards under temporary names, then renamed);
2. the `checkpoint` index file is rewritten atomically to list only the kept checkpoints;
3. only then are the dropped checkpoints' files deleted.
(`tf.train.CheckpointManager.save` records the index still listing the checkpoint it is about to
delete, deletes it, then records again: a kill in between leaves a listed, missing checkpoint.)
A kill can leave unlisted orphan files only; the next save removes them. JSON side files go
through `tf_todm.atomic_files.write_json_atomic` (temp + rename).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from typing import List, Optional

import tensorflow as tf
from absl import logging

from tf_todm.atomic_files import remove_temp_files, write_json_atomic, write_text_atomic  # noqa: F401 (re-exported)


def write_checkpoint_index(directory: str, names: List[str], timestamps: List[float]) -> None:
    """Atomically writes `<directory>/checkpoint` listing `names` (oldest first, relative to the
    folder so that it can be moved); the last is the latest. The timestamps (s since the epoch)
    let a `tf.train.CheckpointManager` opened on the folder list the checkpoints too."""
    from google.protobuf import text_format

    # An absolute folder: with a relative one, TF rewrites the names relative to it as seen from
    # the working directory (`../../ckpt-N`), and it rewrites the list it is given in place.
    index = tf.compat.v1.train.generate_checkpoint_state_proto(
        os.path.abspath(directory), names[-1], all_model_checkpoint_paths=list(names),
        all_model_checkpoint_timestamps=list(timestamps), last_preserved_timestamp=0.0)
    write_text_atomic(os.path.join(directory, "checkpoint"), text_format.MessageToString(index))


_COUNTERS = ("step", "epoch", "batch_in_epoch", "num_skipped")


class TrainState(tf.Module):
    """Counters saved with the weights (non-trainable scalar variables).

    Attributes:
      step: optimizer steps taken (skipped non-finite steps excluded), int64.
      epoch: current epoch (0-based), int64.
      batch_in_epoch: batches of `epoch` already consumed (applied or skipped), int64.
      num_skipped: total steps skipped because the loss or a gradient was not finite, int64.
      train_seconds: wall-clock seconds of training behind the saved state, summed over resumes
        (time lost after the last checkpoint of a killed run is not counted), float64.
    """

    def __init__(self):
        super().__init__(name="train_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch_in_epoch")
        self.num_skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_skipped")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")

    def as_dict(self) -> dict:
        return {**{k: int(getattr(self, k).numpy()) for k in _COUNTERS},
                "train_seconds": round(float(self.train_seconds.numpy()), 3)}

    def counters_only(self) -> tf.Module:
        """A view of the four counters without `train_seconds` (same variables), to restore
        checkpoints written before `train_seconds` existed."""
        view = tf.Module(name="train_state")
        for name in _COUNTERS:
            setattr(view, name, getattr(self, name))
        return view


def has_train_seconds(path: str) -> bool:
    """Whether the checkpoint at `path` saved `TrainState.train_seconds`."""
    return any(name.startswith("state/train_seconds/") for name, _ in tf.train.list_variables(path))


_CHECKPOINT_FILE = re.compile(r"^(ckpt-\d+)\.(index|data-\d+-of-\d+)$")


def kept_checkpoints(listed: List[str], new: str, max_to_keep: int) -> List[str]:
    """The index's checkpoint names after saving `new`: oldest first, at most `max_to_keep`."""
    ordered = [name for name in listed if name != new] + [new]
    return ordered[-max_to_keep:]


def listed_checkpoints(directory: str) -> List[str]:
    """Checkpoint paths the `checkpoint` index in `directory` lists, oldest first (empty if none)."""
    index = tf.train.get_checkpoint_state(directory)
    return list(index.all_model_checkpoint_paths) if index is not None else []


class Checkpointer:
    """`tf.train.Checkpoint` of (model, optimizer, state), saved as `<directory>/ckpt-<step>`.

    Args:
      directory: checkpoint folder (`<run>/ckpt`).
      model, optimizer, state: objects to save (the optimizer may be None).
      max_to_keep: checkpoints kept (older ones are deleted after the index stops listing them).
      is_chief: in multi-worker training every worker must call `save` (the save is collective);
        non-chief workers write to a private temporary folder that is deleted afterwards.
    """

    def __init__(self, directory: str, model, optimizer, state: TrainState, max_to_keep: int = 3,
                 is_chief: bool = True):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = directory
        self.is_chief = is_chief
        self.max_to_keep = max_to_keep
        objects = {"model": model, "state": state}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._checkpoint_without_train_seconds = tf.train.Checkpoint(
            **{**objects, "state": state.counters_only()})
        self.state = state

    @property
    def checkpoints(self) -> List[str]:
        """Paths the index lists, oldest first (empty if nothing was saved)."""
        return listed_checkpoints(self.directory)

    @property
    def latest(self) -> Optional[str]:
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> Optional[str]:
        """Restores the newest checkpoint if there is one; returns its path (or None).

        A checkpoint written before `TrainState.train_seconds` existed restores everything else and
        leaves `train_seconds` as it was (0 in a new trainer, logged): the time budget restarts.
        """
        path = self.latest
        if path is None:
            return None
        checkpoint = self.checkpoint
        if not has_train_seconds(path):
            logging.warning("%s predates TrainState.train_seconds: the time budget counts from 0", path)
            checkpoint = self._checkpoint_without_train_seconds
        checkpoint.read(path).assert_existing_objects_matched()  # `read` pairs with `write`
        return path

    def save(self) -> Optional[str]:
        """Saves (collectively); returns the chief's checkpoint path (None on other workers)."""
        if not self.is_chief:
            tmp = tempfile.mkdtemp(prefix="ckpt_worker_")
            try:
                self.checkpoint.write(os.path.join(tmp, "ckpt"))
            finally:
                tf.io.gfile.rmtree(tmp)
            return None
        tf.io.gfile.makedirs(self.directory)
        path = self.checkpoint.write(
            os.path.join(self.directory, f"ckpt-{int(self.state.step.numpy())}"))
        index = tf.train.get_checkpoint_state(self.directory)
        listed = [os.path.basename(p) for p in index.all_model_checkpoint_paths] if index else []
        times = list(index.all_model_checkpoint_timestamps) if index is not None else []
        stamps = {name: times[i] if i < len(times) else 0.0 for i, name in enumerate(listed)}
        name = os.path.basename(path)
        stamps[name] = time.time()
        kept = kept_checkpoints(list(stamps), name, self.max_to_keep)
        write_checkpoint_index(self.directory, kept, [stamps[k] for k in kept])
        self._delete_unlisted(set(kept))
        return path

    def _delete_unlisted(self, kept_names: set) -> None:
        """Removes `ckpt-<n>.*` files the index does not list (dropped checkpoints, kill orphans)
        and index temp files a writer killed mid-write left (only the chief writes here)."""
        for name in tf.io.gfile.listdir(self.directory):
            match = _CHECKPOINT_FILE.match(name)
            if match and match.group(1) not in kept_names:
                tf.io.gfile.remove(os.path.join(self.directory, name))
        remove_temp_files(self.directory, ".tmp")  # the index is written by `write_text_atomic`
