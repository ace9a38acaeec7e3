"""Checkpoint averaging in `load_trained_model(average_last=N, up_to_step=S)`, against a float64 numpy mean."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_todm.models.testing import tiny_config
from tf_todm.models.transducer import Transducer
from tf_todm.training.checkpoints import Checkpointer, TrainState, listed_checkpoints
from tf_todm.training.restore import (RunFolderError, average_weights, checkpoint_step, checkpoints_to_restore,
                                     load_trained_model, select_checkpoints)


def _run_folder(tmp_path, num_checkpoints=3):
    """A run folder whose Checkpointer saved `num_checkpoints` different weight sets; returns
    (run_dir, [weights of each save])."""
    config = tiny_config(conv_norm="batch")
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"model": config.to_dict()}, f)
    model = Transducer(config, name="transducer")
    state = TrainState()
    saver = Checkpointer(str(tmp_path / "ckpt"), model, None, state, max_to_keep=num_checkpoints)
    rng = np.random.default_rng(0)
    saved = []
    for step in range(num_checkpoints):
        model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
        state.step.assign(100 * (step + 1))
        saver.save()
        saved.append(model.get_weights())
    return str(tmp_path), saved


def test_average_weights_matches_float64_mean_and_keeps_integer_arrays_from_the_last():
    rng = np.random.default_rng(1)
    lists = [[rng.normal(size=(3, 2)).astype(np.float32), np.array([k, 7 * k], np.int64)] for k in range(4)]
    averaged = average_weights(lists)
    reference = np.mean(np.stack([np.asarray(l[0], np.float64) for l in lists]), axis=0)
    assert averaged[0].dtype == np.float32
    np.testing.assert_allclose(averaged[0], reference, rtol=1e-6)
    np.testing.assert_array_equal(averaged[1], lists[-1][1])


def test_average_weights_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        average_weights([[np.zeros(3, np.float32)], [np.zeros(4, np.float32)]])
    with pytest.raises(ValueError, match="no weights"):
        average_weights([])


def test_load_trained_model_averages_the_newest_checkpoints(tmp_path):
    run_dir, saved = _run_folder(tmp_path)
    assert len(listed_checkpoints(os.path.join(run_dir, "ckpt"))) == 3
    newest = load_trained_model(run_dir).get_weights()
    for got, want in zip(newest, saved[-1]):
        np.testing.assert_array_equal(got, want)
    averaged = load_trained_model(run_dir, average_last=2).get_weights()
    for got, a, b in zip(averaged, saved[-2], saved[-1]):
        want = (np.asarray(a, np.float64) + np.asarray(b, np.float64)) / 2
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-6, atol=1e-7)
    # the BatchNorm statistics (non-trainable floats) are averaged too
    model = load_trained_model(run_dir, average_last=3)
    moving = [v for v in model.non_trainable_variables if "moving_mean" in v.path]
    assert moving, "the config has conv-module BatchNorm"
    index = [w.path for w in model.weights].index(moving[0].path)
    want = np.mean([np.asarray(s[index], np.float64) for s in saved], axis=0)
    np.testing.assert_allclose(moving[0].numpy(), want, rtol=1e-6, atol=1e-7)


def test_averaging_more_checkpoints_than_kept_names_the_folder_and_count(tmp_path):
    run_dir, _ = _run_folder(tmp_path, num_checkpoints=2)
    with pytest.raises(RunFolderError, match=r"ckpt: holds 2 checkpoints, cannot average the last 3"):
        load_trained_model(run_dir, average_last=3)
    with pytest.raises(RunFolderError, match="average_last=0"):
        load_trained_model(run_dir, average_last=0)


def test_up_to_step_takes_the_newest_checkpoints_at_or_before_that_step(tmp_path):
    run_dir, saved = _run_folder(tmp_path)  # steps 100, 200, 300
    for bound in (200, 299):
        for got, want in zip(load_trained_model(run_dir, up_to_step=bound).get_weights(), saved[1]):
            np.testing.assert_array_equal(got, want)
    averaged = load_trained_model(run_dir, average_last=2, up_to_step=200).get_weights()
    for got, a, b in zip(averaged, saved[0], saved[1]):
        want = (np.asarray(a, np.float64) + np.asarray(b, np.float64)) / 2
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-6, atol=1e-7)
    with pytest.raises(RunFolderError, match=r"holds 1 checkpoints at or before step 150, cannot average the "
                                             r"last 2 \(steps kept: \[100, 200, 300\]\)"):
        load_trained_model(run_dir, average_last=2, up_to_step=150)
    with pytest.raises(RunFolderError, match="holds 0 checkpoints at or before step 50"):
        load_trained_model(run_dir, up_to_step=50)
    def steps(*args):  # the steps the loader restores, as evaluate_run records them
        return [checkpoint_step(p) for p in checkpoints_to_restore(run_dir, *args)]

    assert (steps(), steps(1, 299), steps(2, 200), steps(3)) == ([300], [200], [100, 200], [100, 200, 300])


def test_checkpoint_step_parses_checkpointer_names_only():
    assert checkpoint_step("/runs/a/ckpt/ckpt-6296") == 6296
    assert select_checkpoints(["d/ckpt-3", "d/ckpt-10", "d/ckpt-20"], 2, up_to_step=15) == ["d/ckpt-3", "d/ckpt-10"]
    for bad in ("/runs/a/ckpt/model-12", "/runs/a/ckpt/ckpt-x"):
        with pytest.raises(RunFolderError, match="expected a checkpoint named ckpt-<step>"):
            checkpoint_step(bad)


def test_recipes_load_the_averaged_teacher_and_report_folder_errors_as_recipe_errors(tmp_path):
    """`load_transducer` (the recipes' and the benchmark's --teacher_run loader) with
    `--teacher_average_last`: the float64 mean of the newest checkpoints."""
    from tf_todm.recipes.common import RecipeError, load_transducer
    run_dir, saved = _run_folder(tmp_path)
    averaged = load_transducer(run_dir, average_last=2).get_weights()
    for got, a, b in zip(averaged, saved[-2], saved[-1]):
        want = (np.asarray(a, np.float64) + np.asarray(b, np.float64)) / 2
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-6, atol=1e-7)
    with pytest.raises(RecipeError, match="cannot average the last 4"):
        load_transducer(run_dir, average_last=4)
