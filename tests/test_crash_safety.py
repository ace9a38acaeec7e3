"""Crash safety and non-finite numbers.

1. NaN / Inf / overflow in a batch: the trainer skips and counts the step, keeps training, stops
   with `NonFiniteLossError` after `max_consecutive_nonfinite` in a row, and every checkpoint it
   writes holds finite weights (read back from disk, not from memory).
2. SIGKILL during checkpoint writes (fast): a process saving a large state with the trainer's own
   `Checkpointer` is killed at random moments 3 times; after every kill each checkpoint listed in
   the `checkpoint` index restores and is internally consistent (all variables from one step), and
   the restarted process resumes from the newest one.
3. SIGKILL a real training run (`experiments.train_supernet`, slow) at 3 random points; each
   restart resumes from the last complete checkpoint; the final weights equal an uninterrupted
   run's (max abs diff reported).
4. Multi-worker (slow): 2 worker processes on localhost (TF_CONFIG, MultiWorkerMirroredStrategy);
   one worker is killed, the cluster is restarted and resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # --import-mode=importlib
import bad_input_fixtures as F  # noqa: E402

from tf_todm.models.config import TransducerConfig  # noqa: E402
from tf_todm.training.config import TrainConfig  # noqa: E402
from tf_todm.training.task import TransducerTask  # noqa: E402
from tf_todm.training.trainer import NonFiniteLossError, Trainer  # noqa: E402

B, T, F_DIM, U, V = 3, 29, 11, 4, 7
MODEL = TransducerConfig(input_dim=F_DIM, model_dim=12, num_blocks=2, ff_dim=14, num_heads=2, conv_dim=10,
                         conv_kernel_size=3, subsampling_channels=4, predictor_dim=10, joiner_dim=13,
                         vocab_size=V, dropout=0.0)


def checkpoint_arrays(ckpt_dir_or_path: str) -> dict:
    """{name: array} of every float tensor stored in a checkpoint (weights and optimizer slots)."""
    reader = tf.train.load_checkpoint(ckpt_dir_or_path)
    out = {}
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            out[name] = reader.get_tensor(name)
    return out


def model_weight_names(arrays: dict) -> list:
    """Names of the model's weights in `checkpoint_arrays(...)`. A checkpoint stores each variable
    once, under the first object path found breadth-first: the Keras 3 optimizer's
    `_trainable_variables` list is shallower than most layers, so most weights are stored as
    `optimizer/_trainable_variables/<i>` rather than `model/...`."""
    return sorted(n for n in arrays if "OPTIMIZER_SLOT" not in n
                  and (n.startswith("model/") or n.startswith("optimizer/_trainable_variables/")))


def batch(seed: int, poison: str = "") -> dict:
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(B, T, F_DIM)).astype(np.float32)
    if poison == "nan":
        feats[1, 4, 3] = np.nan
    elif poison == "inf":
        feats[0, 2, 1] = np.inf
    return {"features": tf.constant(feats), "feature_lengths": tf.constant([T, T - 5, T - 9], tf.int32),
            "labels": tf.constant(rng.integers(1, V, size=(B, U)), tf.int32),
            "label_lengths": tf.constant([4, 2, 3], tf.int32), "text": tf.constant(["a", "b", "c"])}


# ================================================================== 1. non-finite steps


def test_nonfinite_steps_skipped_counted_and_never_checkpointed(tmp_path):
    config = TrainConfig(loss="exact", supernet=False, batch_size=B, optimizer="adam", base_lr=0.01,
                         warmup_batches=0, max_consecutive_nonfinite=3, dropout_max=0.0)
    trainer = Trainer(TransducerTask(MODEL, config), config, str(tmp_path))
    assert trainer.train_step(batch(0), [])[1]
    for k, poison in enumerate(["nan", "inf"]):
        before = [v.numpy().copy() for v in trainer.model.trainable_variables]
        # A NaN input frame makes the gradient non-finite; whether the loss is too depends on the
        # CPU's kernels (x86 max-based activations can map NaN to 0 in the forward pass: the loss
        # was finite on an AMD EPYC host, NaN on the earlier one). Either one must skip the step.
        _, applied = trainer.train_step(batch(10 + k, poison), [])
        assert not applied, poison
        for b, v in zip(before, trainer.model.trainable_variables):
            np.testing.assert_array_equal(b, v.numpy())
        # Training continues after a skip (which resets the run of failures).
        assert trainer.train_step(batch(20 + k), [])[1], poison
    path = trainer.save()
    stored = checkpoint_arrays(path)
    assert len(stored) > 20
    assert all(np.isfinite(a).all() for a in stored.values()), [n for n, a in stored.items()
                                                                 if not np.isfinite(a).all()]
    reader = tf.train.load_checkpoint(path)
    skipped = [n for n in reader.get_variable_to_shape_map() if n.startswith("state/num_skipped")]
    assert reader.get_tensor(skipped[0]) == 2 and trainer.state.as_dict()["step"] == 3
    # 3 bad steps in a row stop training with one clear line.
    trainer.train_step(batch(3, "nan"), [])
    trainer.train_step(batch(4, "inf"), [])
    with pytest.raises(NonFiniteLossError, match=r"^3 consecutive steps had a NaN/Inf loss") as info:
        trainer.train_step(batch(5, "nan"), [])
    assert "\n" not in str(info.value)
    assert trainer.state.as_dict()["num_skipped"] == 5
    final = checkpoint_arrays(trainer.save())
    assert all(np.isfinite(a).all() for a in final.values())


def test_diverging_learning_rate_never_writes_nonfinite_weights(tmp_path):
    """A huge learning rate with finite gradients: weights may overflow inside the optimizer, which
    the loss check cannot see. The checkpoint must never hold Inf/NaN weights."""
    config = TrainConfig(loss="exact", supernet=False, batch_size=B, optimizer="adam", base_lr=1e38,
                         warmup_batches=0, max_consecutive_nonfinite=2, dropout_max=0.0,
                         clipping_scale=0.0)
    trainer = Trainer(TransducerTask(MODEL, config), config, str(tmp_path))
    for seed in range(8):
        try:
            trainer.train_step(batch(seed), [])
        except NonFiniteLossError:
            break
    stored = checkpoint_arrays(trainer.save())
    bad = [n for n, a in stored.items() if not np.isfinite(a).all()]
    assert not bad, f"checkpoint holds non-finite tensors: {bad[:5]} (state {trainer.state.as_dict()})"


# ================================================================== 2. SIGKILL during saves (fast)

SAVER = textwrap.dedent("""
    import os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tf_todm.training.checkpoints import Checkpointer, TrainState

    class Big(tf.Module):
        def __init__(self):
            # ~24 MB in 6 variables, so a save takes long enough to be killed in the middle.
            self.ws = [tf.Variable(tf.zeros([1000, 1000])) for _ in range(6)]

    out, total = sys.argv[1], int(sys.argv[2])
    model, state = Big(), TrainState()
    ckpt = Checkpointer(out, model, None, state, max_to_keep=3)
    restored = ckpt.restore_latest()
    start = int(state.step.numpy())
    print(f"start {start} restored {restored}", flush=True)
    for step in range(start + 1, total + 1):
        for i, w in enumerate(model.ws):  # every variable says which step it belongs to
            w.assign(tf.fill(w.shape, float(step * 10 + i)))
        state.step.assign(step)
        ckpt.save()
        print(f"saved {step}", flush=True)
    print("done", flush=True)
""")


def _check_every_listed_checkpoint(ckpt_dir: str) -> list:
    """Every checkpoint the index lists restores, and holds variables of one single step."""
    index = tf.train.get_checkpoint_state(ckpt_dir)
    if index is None:
        return []
    steps = []
    for path in index.all_model_checkpoint_paths:
        arrays = checkpoint_arrays(path)
        reader = tf.train.load_checkpoint(path)
        step = int(reader.get_tensor([n for n in reader.get_variable_to_shape_map()
                                      if n.startswith("state/step")][0]))
        weights = sorted((n, a) for n, a in arrays.items() if n.startswith("model/ws/"))
        assert len(weights) == 6, list(arrays)
        for name, a in weights:
            i = int(name.split("/")[2])
            assert a.shape == (1000, 1000) and (a == step * 10 + i).all(), (path, name, step)
        assert path.endswith(f"-{step}")
        steps.append(step)
    return steps


def test_sigkill_during_checkpoint_writes_never_leaves_a_partial_checkpoint(tmp_path):
    out, total = str(tmp_path / "ckpt"), 40
    rng = random.Random(8)
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    env = F.cli_env()
    kills = []
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, str(script), out, str(total)], cwd=F.REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        saves_seen, wanted = 0, rng.randint(1, 4)
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            assert line, f"saver exited early (attempt {attempt})"
            if line.startswith("start"):
                start = int(line.split()[1])
                assert start == (max(kills[-1][1]) if kills else 0), (line, kills)
            if line.startswith("saved"):
                saves_seen += 1
                if saves_seen == wanted:
                    break
        time.sleep(rng.uniform(0.0, 0.4))  # land inside the next save, or between saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        steps = _check_every_listed_checkpoint(out)
        assert steps, "no checkpoint survived"
        kills.append((attempt, steps))
    proc = subprocess.run([sys.executable, str(script), out, str(total)], cwd=F.REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith(f"start {max(kills[-1][1])}")
    assert _check_every_listed_checkpoint(out) == [total - 2, total - 1, total]
    leftovers = [f for f in os.listdir(out) if "tmp" in f.lower()]
    assert not leftovers, leftovers
    print("kills (attempt, checkpoints listed after the kill):", kills)


# ================================================================== 3. SIGKILL a training run (slow)


def _train_flags(corpus: str, out_dir: str, *extra: str) -> list:
    return [f"--flagfile={os.path.join(F.REPO, 'experiments', 'flags', 'supernet_tiny.cfg')}",
            f"--out_dir={out_dir}", f"--train_manifest={corpus}/train.jsonl",
            f"--dev_manifest={corpus}/dev.jsonl", f"--tokenizer={corpus}/tok.model",
            "--model=num_blocks=2", "--train=num_epochs=3", "--train=checkpoint_every_steps=2",
            "--train=eval_max_utterances=2", *extra]


def _tiny_corpus(root: str) -> str:
    os.makedirs(root, exist_ok=True)
    F.good_manifest(root, "train.jsonl", num=8)
    F.good_manifest(root, "dev.jsonl", num=2)
    F.tiny_tokenizer(root)
    return root


def _popen_train(flags: list, log_path: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "experiments.train_supernet", *flags], cwd=F.REPO,
                            env=F.cli_env(), stdout=log, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout: float, proc=None, what: str = ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _logged_step(log_path: str) -> int:
    """Highest 'step N/M' the progress logger printed."""
    best = 0
    with open(log_path, errors="replace") as f:
        for line in f:
            if "progress.py" in line and " step " in line:
                try:
                    best = max(best, int(line.split(" step ")[1].split("/")[0]))
                except ValueError:
                    pass
    return best


@pytest.mark.slow
def test_sigkill_training_three_times_resumes_to_the_same_weights(tmp_path):
    corpus = _tiny_corpus(str(tmp_path / "corpus"))
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    reference = _popen_train(_train_flags(corpus, straight), str(tmp_path / "straight.log"))
    rng = random.Random(3)
    history = []
    try:
        for attempt in range(3):
            log = str(tmp_path / f"killed{attempt}.log")
            proc = _popen_train(_train_flags(corpus, killed, "--step_delay_seconds=0.7"), log)
            start = history[-1]["latest"] if history else 0
            # Random point: 2-3 steps after the (re)start (so past the next checkpoint, written
            # every 2 steps, or inside its save), plus a random fraction of a step. 3 kills reach
            # at most step 9 of the 12.
            target = start + rng.randint(2, 3)
            _wait_for(lambda: _logged_step(log) >= target, 900, proc, f"step {target} (attempt {attempt})")
            assert proc.poll() is None, open(log).read()[-3000:]
            time.sleep(rng.uniform(0.0, 0.7))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            index = tf.train.get_checkpoint_state(os.path.join(killed, "ckpt"))
            listed = list(index.all_model_checkpoint_paths) if index else []
            for path in listed:  # every listed checkpoint restores completely
                assert all(np.isfinite(a).all() for a in checkpoint_arrays(path).values())
            latest = int(listed[-1].rsplit("-", 1)[1]) if listed else 0
            text = open(log).read()
            if attempt:
                assert f"resumed from {os.path.join(killed, 'ckpt', 'ckpt')}-{start}" in text or start == 0, \
                    text[-3000:]
            history.append({"attempt": attempt, "killed_after_step": _logged_step(log), "latest": latest})
        # A kill soon after 'step 2' often lands inside that checkpoint's save (the previous one is
        # then the latest); by the last kill at least one checkpoint must have completed.
        assert history[-1]["latest"] > 0, history
        final_log = str(tmp_path / "final.log")
        proc = _popen_train(_train_flags(corpus, killed), final_log)
        assert proc.wait(timeout=1200) == 0, open(final_log).read()[-3000:]
        assert reference.wait(timeout=1200) == 0, open(str(tmp_path / "straight.log")).read()[-3000:]
    finally:
        for p in (reference, proc):
            if p.poll() is None:
                p.kill()
    a = checkpoint_arrays(os.path.join(straight, "ckpt"))
    b = checkpoint_arrays(os.path.join(killed, "ckpt"))
    weights = model_weight_names(a)
    assert len(weights) > 10 and set(a) == set(b)
    max_abs = max(float(np.max(np.abs(a[n] - b[n]))) for n in weights)
    summary = json.loads(open(os.path.join(killed, "train_summary.json")).read())
    print(f"kills: {history}; max |w_killed - w_straight| = {max_abs:.3g}; summary step {summary['step']}")
    assert summary["step"] == json.loads(open(os.path.join(straight, "train_summary.json")).read())["step"]
    assert max_abs < 1e-5, max_abs


# ================================================================== 4. multi-worker (slow)


def _free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.multiprocess
def test_multi_worker_killed_worker_restarts_from_last_checkpoint(tmp_path):
    corpus = _tiny_corpus(str(tmp_path / "corpus"))
    out = str(tmp_path / "run")
    budget_end = time.time() + 1500  # the test bounds its own time

    def start_cluster(tag: str, *extra: str):
        ports = _free_ports(2)
        cluster = {"worker": [f"localhost:{p}" for p in ports]}
        procs, logs = [], []
        for i in range(2):
            env = F.cli_env({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
            log = str(tmp_path / f"{tag}_w{i}.log")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "experiments.train_supernet",
                 *_train_flags(corpus, out, "--strategy=multi_worker", "--train=batch_size=2", *extra)],
                cwd=F.REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT))
        return procs, logs

    procs, logs = start_cluster("first", "--step_delay_seconds=0.7")
    try:
        ckpt_dir = os.path.join(out, "ckpt")
        _wait_for(lambda: (tf.train.latest_checkpoint(ckpt_dir) or "").endswith(("-2", "-4")),
                  max(60, budget_end - time.time() - 600), procs[0], "a checkpoint from the cluster")
        saved = int(tf.train.latest_checkpoint(ckpt_dir).rsplit("-", 1)[1])
        procs[1].send_signal(signal.SIGKILL)  # the non-chief worker dies
        procs[1].wait()
        # The chief cannot finish a collective without its peer: it errors out or hangs; stop it.
        try:
            procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            procs[0].kill()
            procs[0].wait()
        latest = int(tf.train.latest_checkpoint(ckpt_dir).rsplit("-", 1)[1])
        assert latest >= saved
        for path in tf.train.get_checkpoint_state(ckpt_dir).all_model_checkpoint_paths:
            assert all(np.isfinite(a).all() for a in checkpoint_arrays(path).values())
        procs, logs = start_cluster("restart")
        for p in procs:
            p.wait(timeout=max(30, budget_end - time.time()))
        texts = [open(log).read() for log in logs]
        assert [p.returncode for p in procs] == [0, 0], [t[-2000:] for t in texts]
        assert f"resumed from {os.path.join(ckpt_dir, 'ckpt')}-{latest}" in texts[0], texts[0][-3000:]
        summary = json.loads(open(os.path.join(out, "train_summary.json")).read())
        assert summary["steps_this_call"] == summary["step"] - latest
        print(f"multi-worker: killed worker 1 after checkpoint {saved}; restart resumed from {latest}, "
              f"finished at step {summary['step']}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
