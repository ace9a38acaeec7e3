"""Load a trained run folder (`config.json` + `ckpt/` + `tokenizer.model`) for search and export."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tf_todm.models.config import TransducerConfig
from tf_todm.models.transducer import Transducer


class RunFolderError(ValueError):
    """A run folder that cannot be loaded; the message names the file and what was expected."""


def load_trained_model(run_dir: str, subnet_config=None, calibration_batches=None) -> Transducer:
    """The `Transducer` of a trainer run folder: `config.json["model"]` + the newest `ckpt/`,
    optionally extracted to `subnet_config` (a `SubnetConfig`). Refuses a checkpoint that does not
    hold every weight of the model (e.g. one written by another config) instead of leaving some
    weights randomly initialised.

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
    model = Transducer(TransducerConfig.from_dict(saved["model"]), name="transducer")
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
    if latest is None:
        raise RunFolderError(f"{os.path.join(run_dir, 'ckpt')}: no checkpoint found")
    try:
        status = tf.train.Checkpoint(model=model).read(latest).expect_partial()  # Checkpointer writes
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        reason = " ".join(str(e).split())[:240]
        raise RunFolderError(f"{latest}: does not hold every weight of the model in {path}; expected a "
                             f"checkpoint of the same config ({reason})") from None
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
