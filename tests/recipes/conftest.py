"""Fixtures of the recipe tests: a tiny real corpus (espeak-ng/flite speech) and its tokenizer."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


@pytest.fixture(scope="session")
def recipe_corpus(tmp_path_factory):
    """~0.01 h corpus: {"root", "train", "dev", "test", "tokenizer_path"}."""
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.synthetic import generate_corpus
    from tf_todm.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("recipe_corpus")
    generate_corpus(str(root), hours=0.01, seed=3, num_workers=2, progress=False)
    splits = {s: read_manifest(str(root / f"{s}.jsonl")) for s in ("train", "dev", "test")}
    texts = [u.text for u in splits["train"] + splits["dev"]] + [" ".join("abcdefghijklmnopqrstuvwxyz'")]
    tokenizer = train_tokenizer(texts, str(root / "tok"), vocab_size=32)
    return {"root": str(root), **splits, "tokenizer_path": tokenizer}


def _tiny_config(vocab_size, **overrides):
    """A tiny Transducer config with odd, distinct dims."""
    from tf_todm.models.config import TransducerConfig
    base = dict(input_dim=80, model_dim=12, num_blocks=3, ff_dim=18, num_heads=2, conv_dim=10,
                conv_kernel_size=3, subsampling_channels=4, predictor_dim=14, joiner_dim=16,
                vocab_size=vocab_size, dropout=0.0)
    base.update(overrides)
    return TransducerConfig(**base)


def _tiny_train_config(**overrides):
    from tf_todm.training.config import TrainConfig
    base = dict(batch_size=5, num_epochs=1, supernet=False, optimizer="adam", base_lr=0.01,
                warmup_batches=1.0, warmup_start=1.0, specaugment=False, loss="exact",
                log_every_steps=1, checkpoint_every_steps=0, eval_max_utterances=3,
                alpha_min=1.0, alpha_max=1.0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture
def tiny_config():
    return _tiny_config


@pytest.fixture
def tiny_train_config():
    return _tiny_train_config
