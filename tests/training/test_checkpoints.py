"""Checkpointer round trip and atomic JSON side files."""
import json
import os

import numpy as np
import tensorflow as tf

from tf_todm.training.checkpoints import Checkpointer, TrainState, write_json_atomic


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert sorted(os.listdir(path.parent)) == ["state.json"]  # no temp files left


def test_checkpointer_restores_weights_and_counters(tmp_path):
    class Tiny(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(3, dtype=np.float32))

    model, state = Tiny(), TrainState()
    ckpt = Checkpointer(str(tmp_path / "ckpt"), model, None, state, max_to_keep=2)
    assert ckpt.restore_latest() is None
    for step in (1, 2, 3):
        state.step.assign(step)
        state.batch_in_epoch.assign(10 * step)
        model.w.assign_add(tf.ones(3))
        ckpt.save()
    assert len(ckpt.manager.checkpoints) == 2  # max_to_keep
    model2, state2 = Tiny(), TrainState()
    path = Checkpointer(str(tmp_path / "ckpt"), model2, None, state2).restore_latest()
    assert path.endswith("-3")
    np.testing.assert_array_equal(model2.w.numpy(), np.arange(3) + 3)
    assert state2.as_dict() == {"step": 3, "epoch": 0, "batch_in_epoch": 30, "num_skipped": 0}
