"""Shared fixtures for the training tests: a tiny real corpus (TTS audio) and its tokenizer, a
tiny briefly trained run folder, and a runner for `python -m experiments.*` subprocesses."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # subprocess tests import the package from the checkout
    sys.path.insert(0, REPO)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """~36 s of synthetic speech: dict with train/dev manifests, utterances, tokenizer path."""
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.synthetic import generate_corpus
    from tf_todm.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(str(root), hours=0.01, seed=3, num_workers=2, progress=False)
    train = read_manifest(str(root / "train.jsonl"))
    dev = read_manifest(str(root / "dev.jsonl"))
    tokenizer = train_tokenizer([u.text for u in train + dev], str(root / "tok"), vocab_size=29,
                                model_type="unigram")
    return {"root": str(root), "train_manifest": str(root / "train.jsonl"),
            "dev_manifest": str(root / "dev.jsonl"), "train": train, "dev": dev,
            "tokenizer_path": tokenizer}


def _run_module(args, timeout=600):
    """`python -m <args>` from the checkout; CompletedProcess with text stdout/stderr."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.fixture(scope="session")
def run_module():
    return _run_module


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory):
    """A supernet_tiny.cfg run folder (1 block, 2 steps) on the tiny corpus."""
    out = tmp_path_factory.mktemp("run")
    proc = _run_module(["experiments.train_single", "--flagfile=experiments/flags/supernet_tiny.cfg",
                        f"--out_dir={out}", f"--train_manifest={tiny_corpus['train_manifest']}",
                        f"--dev_manifest={tiny_corpus['dev_manifest']}",
                        f"--tokenizer={tiny_corpus['tokenizer_path']}",
                        "--model=num_blocks=1", "--train=max_steps=2", "--train=eval_every_steps=0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
