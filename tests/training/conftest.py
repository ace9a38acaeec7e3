"""Shared fixtures for the training tests: a tiny real corpus (TTS audio) and its tokenizer."""
import os
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
