"""Load a trained run folder (`config.json` + `ckpt/` + `tokenizer.model`) for search and export."""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from tf_todm.models.config import TransducerConfig
from tf_todm.models.transducer import Transducer


class RunFolderError(ValueError):
    """A run folder that cannot be loaded; the message names the file and what was expected."""


def average_weights(weight_lists: Sequence[Sequence[np.ndarray]]) -> list:
    """Element-wise mean of N models' weights (each a list of arrays in the same order and shapes),
    accumulated in float64 and cast back to each array's dtype. Integer arrays (counters) take the
    last model's values: a mean of step counters means nothing."""
    if not weight_lists:
        raise ValueError("average_weights: no weights to average")
    shapes = [[np.shape(w) for w in ws] for ws in weight_lists]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("average_weights: the weight lists differ in number or shape of arrays")
    averaged = []
    for arrays in zip(*weight_lists):
        last = np.asarray(arrays[-1])
        if not np.issubdtype(last.dtype, np.floating):
            averaged.append(last.copy())
            continue
        averaged.append(np.mean([np.asarray(a, np.float64) for a in arrays], axis=0).astype(last.dtype))
    return averaged


def _read_checkpoint(model, path: str, config_path: str) -> None:
    try:
        status = tf.train.Checkpoint(model=model).read(path).expect_partial()  # Checkpointer writes
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        reason = " ".join(str(e).split())[:240]
        raise RunFolderError(f"{path}: does not hold every weight of the model in {config_path}; expected a "
                             f"checkpoint of the same config ({reason})") from None


def checkpoint_step(path: str) -> int:
    """The optimizer step of a `Checkpointer` checkpoint path (`.../ckpt-<step>`)."""
    prefix, _, step = os.path.basename(path).rpartition("-")
    if prefix != "ckpt" or not step.isdigit():
        raise RunFolderError(f"{path}: expected a checkpoint named ckpt-<step>")
    return int(step)


def select_checkpoints(paths: Sequence[str], count: int, up_to_step: int | None = None) -> list:
    """The newest `count` of `paths` (oldest first, as the checkpoint index lists them) whose step
    is at most `up_to_step` (None = no bound); raises `RunFolderError` when fewer exist."""
    eligible = [p for p in paths if up_to_step is None or checkpoint_step(p) <= up_to_step]
    if len(eligible) < count:
        bound = "" if up_to_step is None else f" at or before step {up_to_step}"
        folder = os.path.dirname(paths[0]) if paths else "ckpt"
        raise RunFolderError(f"{folder}: holds {len(eligible)} checkpoints{bound}, cannot average the last {count}"
                             f" (steps kept: {[checkpoint_step(p) for p in paths]})")
    return list(eligible[-count:])


def checkpoints_to_restore(run_dir: str, average_last: int = 1, up_to_step: int | None = None) -> list:
    """Paths of the checkpoints `load_trained_model` restores (and averages) for these settings,
    oldest first: the newest of `run_dir/ckpt`, or the newest `average_last` at or before
    `up_to_step` (`select_checkpoints`). Raises `RunFolderError` when there are too few."""
    if average_last < 1:
        raise RunFolderError(f"average_last={average_last}: expected >= 1 checkpoints to average")
    ckpt_dir = os.path.join(run_dir, "ckpt")
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest is None:
        raise RunFolderError(f"{ckpt_dir}: no checkpoint found")
    if average_last == 1 and up_to_step is None:
        return [latest]
    from tf_todm.training.checkpoints import listed_checkpoints
    return select_checkpoints(listed_checkpoints(ckpt_dir), average_last, up_to_step)


def load_trained_model(run_dir: str, subnet_config=None, calibration_batches=None,
                       average_last: int = 1, up_to_step: int | None = None) -> Transducer:
    """The `Transducer` of a trainer run folder: `config.json["model"]` + the newest `ckpt/`,
    optionally extracted to `subnet_config` (a `SubnetConfig`). Refuses a checkpoint that does not
    hold every weight of the model (e.g. one written by another config) instead of leaving some
    weights randomly initialised.

    `average_last` = N > 1 loads the element-wise mean of the newest N checkpoints of the index
    (`average_weights`; BatchNorm statistics are averaged like every float weight), which smooths
    the noise of the last optimizer steps; the run must have kept N
    (`TrainConfig.max_checkpoints_to_keep`). `up_to_step` = S takes the newest checkpoints written at
    or before step S instead, so runs that reached different step counts in the same wall time can
    be compared at equal steps.

    A supernet with conv-module BatchNorm holds statistics pooled over the subnets it trained; a
    subnet needs its own, re-estimated from `calibration_batches` (training batches,
    `batch_norm_calibration.calibration_batches`) as the search and the demo do. Extracting one
    without them is refused."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise RunFolderError(f"{path}: missing; expected a training run folder with config.json and ckpt/")
    try:
        with open(path) as f:
            saved = json.load(f)
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise RunFolderError(f"{path}: no 'model' entry (the TransducerConfig of the run)")
    checkpoints = checkpoints_to_restore(run_dir, average_last, up_to_step)
    model = Transducer(TransducerConfig.from_dict(saved["model"]), name="transducer")
    if len(checkpoints) == 1:
        _read_checkpoint(model, checkpoints[0], path)
    else:
        weights = []
        for checkpoint in checkpoints:
            _read_checkpoint(model, checkpoint, path)
            weights.append(model.get_weights())
        model.set_weights(average_weights(weights))
    if subnet_config is not None:
        from tf_todm.export.extract import extract_subnet
        from tf_todm.models.batch_norm_calibration import has_batch_norm
        if calibration_batches is None and has_batch_norm(model):
            raise RunFolderError(
                f"{run_dir}: the supernet has conv-module BatchNorm (conv_norm='batch'), so a subnet "
                f"needs its statistics re-estimated from training audio; give calibration batches "
                f"(CLIs: --train_manifest / --calibration_manifest)")
        model = extract_subnet(model, subnet_config, calibration_batches=calibration_batches)
    return model


def load_run_tokenizer(run_dir: str):
    """The run's tokenizer as a `Tokenizer`: `<run_dir>/tokenizer.model`, else the
    `train.tokenizer_path` recorded in its config.json (a run given `--tokenizer=<elsewhere>`)."""
    from tf_todm.data.tokenizer import Tokenizer
    path = os.path.join(run_dir, "tokenizer.model")
    if os.path.exists(path):
        return Tokenizer(path)
    recorded = ""
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            recorded = json.load(f).get("train", {}).get("tokenizer_path", "")
    if recorded and os.path.exists(recorded):
        return Tokenizer(recorded)
    raise RunFolderError(f"{path}: missing (and config.json names no existing tokenizer_path"
                         f"{': ' + recorded if recorded else ''}); expected the run's SentencePiece model")
