"""Two real worker processes on localhost (TF_CONFIG, MultiWorkerMirroredStrategy) train a few
steps of a tiny supernet together; both end at the same step with identical weights."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_two_workers_train_a_tiny_supernet(tiny_corpus, tmp_path):
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        cmd = [sys.executable, "-m", "experiments.train_supernet",
               "--flagfile=experiments/flags/supernet_tiny.cfg", f"--out_dir={tmp_path / 'run'}",
               f"--train_manifest={tiny_corpus['train_manifest']}",
               f"--dev_manifest={tiny_corpus['dev_manifest']}",
               f"--tokenizer={tiny_corpus['tokenizer_path']}", "--strategy=multi_worker",
               "--model=num_blocks=1", "--train=loss=exact", "--train=num_random_subnets=0",
               "--train=max_steps=3", "--train=checkpoint_every_steps=0",
               "--train=eval_max_utterances=2",
               # A time budget that never runs out: the workers still agree on the time used (a
               # collective every logged step) and feed the learning-rate decay from it.
               "--train=max_train_minutes=30", "--train=lr_time_decay=0.5"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=280))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [f"worker {i} exit {p.returncode}:\n{err[-3000:]}"
              for i, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    summaries = [json.loads(out[out.index("{"):]) for out, _ in outputs]
    assert [s["step"] for s in summaries] == [3, 3]
    assert all(s["trace_count"] == 1 for s in summaries)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_replicas"] == 2
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "ckpt"))
    assert int(reader.get_tensor("state/step/.ATTRIBUTES/VARIABLE_VALUE")) == 3
    assert 0 < float(reader.get_tensor("state/train_seconds/.ATTRIBUTES/VARIABLE_VALUE")) < 30 * 60
    assert all(s["stopped_by"] == "max_steps" for s in summaries)
    values = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n.startswith("model/")]
    assert values and all(np.all(np.isfinite(v)) for v in values)
