"""SIGKILL a training run after a checkpoint, restart it: it resumes from the last checkpoint at
the same data position, and its final weights equal those of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(corpus, out_dir, *extra):
    return [sys.executable, "-m", "experiments.train_single",
            "--flagfile=experiments/flags/supernet_tiny.cfg", f"--out_dir={out_dir}",
            f"--train_manifest={corpus['train_manifest']}", f"--dev_manifest={corpus['dev_manifest']}",
            f"--tokenizer={corpus['tokenizer_path']}", "--model=num_blocks=1", "--train=loss=exact",
            "--train=num_epochs=3", "--train=checkpoint_every_steps=2",
            "--train=eval_max_utterances=2", *extra]


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _weights(ckpt_dir):
    """Every saved tensor: weights (the object graph may name them via the optimizer's
    variable list), optimizer slots and counters; not the graph proto, the save counter or the
    wall-clock training time (`state/train_seconds`, which differs between any two runs)."""
    reader = tf.train.load_checkpoint(ckpt_dir)
    names = [n for n in reader.get_variable_to_shape_map()
             if n != "_CHECKPOINTABLE_OBJECT_GRAPH" and not n.startswith(("save_counter", "state/train_seconds/"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_killed_run_resumes_at_the_same_data_position(tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    proc = subprocess.run(_command(tiny_corpus, straight), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = json.loads((straight / "train_summary.json").read_text())["step"]

    killed = tmp_path / "killed"
    victim = subprocess.Popen(_command(tiny_corpus, killed, "--step_delay_seconds=1.5"), cwd=REPO,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = killed / "train_state.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["step"] >= 4:
            break
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    state = json.loads(state_file.read_text())
    assert 4 <= state["step"] < total, state
    # The newest checkpoint is complete and loadable.
    assert tf.train.latest_checkpoint(str(killed / "ckpt")).endswith(f"-{state['step']}")

    # What a kill between the temp write and the rename of train_state.json leaves behind.
    (killed / ".tmp_interrupted.json").write_text('{"step": ')
    proc = subprocess.run(_command(tiny_corpus, killed), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stderr
    assert not (killed / ".tmp_interrupted.json").exists()
    assert "removed temp files of an interrupted write: .tmp_interrupted.json" in proc.stderr
    summary = json.loads((killed / "train_summary.json").read_text())
    assert summary["step"] == total
    assert summary["steps_this_call"] == total - state["step"]

    a, b = _weights(str(straight / "ckpt")), _weights(str(killed / "ckpt"))
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:  # same data order + same subnets => same weights (up to float reassociation)
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-6, err_msg=name)
