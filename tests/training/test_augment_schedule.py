"""TrainConfig.augment_from_epoch: the training pipeline perturbs the audio (speed) and the features
(VTLP) only from that epoch on."""
import numpy as np

from tf_todm.data.manifest import read_manifest
from tf_todm.data.tokenizer import Tokenizer
from tf_todm.models.testing import tiny_config
from tf_todm.training.config import TrainConfig
from tf_todm.training.task import TransducerTask


def lengths_by_text(dataset):
    out = {}
    for batch in dataset:
        for text, n in zip(batch["text"].numpy(), batch["feature_lengths"].numpy()):
            out[text.decode()] = int(n)
    return out


def test_speed_perturbation_starts_at_augment_from_epoch(tiny_corpus):
    train = read_manifest(tiny_corpus["train_manifest"])[:8]
    tokenizer = Tokenizer(tiny_corpus["tokenizer_path"])
    config = TrainConfig(supernet=False, specaugment=False, batch_size=4, speed_perturb=0.2,
                         augment_from_epoch=1)
    task = TransducerTask(tiny_config(vocab_size=tokenizer.vocab_size), config, train, [], tokenizer)
    plain = TransducerTask(tiny_config(vocab_size=tokenizer.vocab_size), config.replace(speed_perturb=0.0),
                           train, [], tokenizer)
    clean = lengths_by_text(plain.make_dataset(epoch=1))
    assert lengths_by_text(task.make_dataset(epoch=0)) == clean  # before augment_from_epoch: untouched
    for epoch in (1, 2):
        perturbed = lengths_by_text(task.make_dataset(epoch=epoch))
        assert perturbed.keys() == clean.keys()
        assert sum(perturbed[t] != clean[t] for t in clean) >= len(clean) // 2, (epoch, perturbed, clean)


def features_by_text(dataset):
    out = {}
    for batch in dataset:
        for i, text in enumerate(batch["text"].numpy()):
            out[text.decode()] = batch["features"][i, :int(batch["feature_lengths"][i])].numpy()
    return out


def test_vtlp_starts_at_augment_from_epoch(tiny_corpus):
    train = read_manifest(tiny_corpus["train_manifest"])[:8]
    tokenizer = Tokenizer(tiny_corpus["tokenizer_path"])
    config = TrainConfig(supernet=False, specaugment=False, batch_size=4, vtlp=0.1, augment_from_epoch=1)
    task = TransducerTask(tiny_config(vocab_size=tokenizer.vocab_size), config, train, [], tokenizer)
    plain = TransducerTask(tiny_config(vocab_size=tokenizer.vocab_size), config.replace(vtlp=0.0),
                           train, [], tokenizer)
    clean = features_by_text(plain.make_dataset(epoch=1))
    before = features_by_text(task.make_dataset(epoch=0))
    assert all(np.array_equal(before[t], clean[t]) for t in clean)  # before augment_from_epoch: untouched
    warped = features_by_text(task.make_dataset(epoch=1))
    assert warped.keys() == clean.keys()
    assert all(warped[t].shape == clean[t].shape and not np.allclose(warped[t], clean[t], atol=1e-3)
               for t in clean)
