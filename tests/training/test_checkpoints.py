"""Checkpointer round trip and atomic JSON side files."""
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from tf_todm.atomic_files import remove_temp_files
from tf_todm.training.checkpoints import Checkpointer, TrainState, write_json_atomic


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert sorted(os.listdir(path.parent)) == ["state.json"]  # no temp files left


def test_remove_temp_files_deletes_only_interrupted_writes_of_that_suffix(tmp_path):
    for name in (".tmp_a1.json", ".tmp_b2.json", ".tmp_c3.tmp", "train_state.json", "tmp_x.json",
                 ".tmp_d4.json.bak"):
        (tmp_path / name).write_text("{}")
    assert remove_temp_files(str(tmp_path), ".json") == [".tmp_a1.json", ".tmp_b2.json"]
    assert sorted(os.listdir(tmp_path)) == [".tmp_c3.tmp", ".tmp_d4.json.bak", "tmp_x.json",
                                            "train_state.json"]
    assert remove_temp_files(str(tmp_path / "missing"), ".json") == []


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
    assert [os.path.basename(p) for p in ckpt.checkpoints] == ["ckpt-2", "ckpt-3"]  # max_to_keep
    assert not [n for n in os.listdir(tmp_path / "ckpt") if n.startswith("ckpt-1.")]  # swept
    # The folder is a standard one: TF's own CheckpointManager lists the same checkpoints.
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(), str(tmp_path / "ckpt"), max_to_keep=2)
    assert manager.checkpoints == ckpt.checkpoints and manager.latest_checkpoint == ckpt.latest
    # The index names checkpoints relative to its folder: a moved run folder still restores.
    shutil.move(str(tmp_path / "ckpt"), str(tmp_path / "moved"))
    model2, state2 = Tiny(), TrainState()
    path = Checkpointer(str(tmp_path / "moved"), model2, None, state2).restore_latest()
    assert path == str(tmp_path / "moved" / "ckpt-3")
    assert path.endswith("-3")
    np.testing.assert_array_equal(model2.w.numpy(), np.arange(3) + 3)
    assert state2.as_dict() == {"step": 3, "epoch": 0, "batch_in_epoch": 30, "num_skipped": 0,
                                "train_seconds": 0.0}


def test_train_seconds_round_trip_and_checkpoints_written_before_it_still_restore(tmp_path):
    class Tiny(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.zeros(3, np.float32))

    model, state = Tiny(), TrainState()
    state.step.assign(7)
    state.train_seconds.assign(123.4567)
    model.w.assign([1.0, 2.0, 3.0])
    Checkpointer(str(tmp_path / "new"), model, None, state).save()
    model2, state2 = Tiny(), TrainState()
    Checkpointer(str(tmp_path / "new"), model2, None, state2).restore_latest()
    assert state2.as_dict()["train_seconds"] == 123.457 and state2.as_dict()["step"] == 7

    # A checkpoint of the layout before train_seconds existed: the four counters only.
    old_state = TrainState()
    old_state.step.assign(5)
    old_state.epoch.assign(1)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, state=old_state.counters_only()),
                               str(tmp_path / "old"), max_to_keep=1).save(checkpoint_number=5)
    model3, state3 = Tiny(), TrainState()
    state3.train_seconds.assign(99.0)
    path = Checkpointer(str(tmp_path / "old"), model3, None, state3).restore_latest()
    assert path.endswith("ckpt-5")
    np.testing.assert_array_equal(model3.w.numpy(), [1.0, 2.0, 3.0])
    assert state3.as_dict() == {"step": 5, "epoch": 1, "batch_in_epoch": 0, "num_skipped": 0,
                                "train_seconds": 99.0}  # left as it was: nothing to restore


def test_kill_between_write_and_index_update_leaves_only_unlisted_orphans(tmp_path):
    """Replays a kill after step 1 of a save (shards written, index not yet updated) and one
    inside an index write: the index still lists only complete checkpoints, a restart restores the
    previous one, and the next save removes the orphan files."""
    class Tiny(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.zeros(3, np.float32))

    directory = str(tmp_path / "ckpt")
    model, state = Tiny(), TrainState()
    ckpt = Checkpointer(directory, model, None, state, max_to_keep=1)
    state.step.assign(1)
    ckpt.save()
    state.step.assign(2)
    model.w.assign(np.ones(3, np.float32))
    ckpt.checkpoint.write(os.path.join(directory, "ckpt-2"))  # ... and the process dies here
    assert [os.path.basename(p) for p in ckpt.checkpoints] == ["ckpt-1"]
    # A kill inside the index's atomic write leaves its temp file (the CI run of stop 26 met one).
    with open(os.path.join(directory, ".tmp_killed.tmp"), "w") as f:
        f.write("model_checkpoint_path: \"ckpt-")

    model2, state2 = Tiny(), TrainState()
    restarted = Checkpointer(directory, model2, None, state2, max_to_keep=1)
    assert restarted.restore_latest().endswith("ckpt-1")
    np.testing.assert_array_equal(model2.w.numpy(), np.zeros(3))
    state2.step.assign(5)
    restarted.save()
    names = sorted(os.listdir(directory))
    assert names == ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index"], names


def test_checkpointer_rejects_max_to_keep_below_one(tmp_path):
    import pytest
    with pytest.raises(ValueError, match="max_to_keep must be >= 1, got 0"):
        Checkpointer(str(tmp_path), tf.Module(), None, TrainState(), max_to_keep=0)


def test_checkpointer_with_a_relative_folder_keeps_its_checkpoints(tmp_path, monkeypatch):
    """`make demo` passes `artifacts/demo/supernet/ckpt`, relative to the working directory. TF's
    index writer rewrote such names to `../../../../ckpt-N` and did so in the list it was given,
    so the sweep then deleted every checkpoint, the one just written included (stop 16's bug)."""
    monkeypatch.chdir(tmp_path)
    model, state = tf.Module(), TrainState()
    model.w = tf.Variable(np.zeros(2, np.float32))
    ckpt = Checkpointer(os.path.join("run", "sub", "ckpt"), model, None, state, max_to_keep=2)
    for step in (1, 2, 3):
        state.step.assign(step)
        model.w.assign_add(tf.ones(2))
        ckpt.save()
    names = sorted(os.listdir(tmp_path / "run" / "sub" / "ckpt"))
    assert names == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                     "ckpt-3.data-00000-of-00001", "ckpt-3.index"], names
    index = (tmp_path / "run" / "sub" / "ckpt" / "checkpoint").read_text()
    assert 'model_checkpoint_path: "ckpt-3"' in index and ".." not in index
    model2, state2 = tf.Module(), TrainState()
    model2.w = tf.Variable(np.zeros(2, np.float32))
    path = Checkpointer(os.path.join("run", "sub", "ckpt"), model2, None, state2).restore_latest()
    assert path == os.path.join("run", "sub", "ckpt", "ckpt-3")
    np.testing.assert_array_equal(model2.w.numpy(), [3.0, 3.0])
