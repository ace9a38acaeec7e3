"""Learning sanity check of the whole training path on real speech: the single-model task (exact
RNN-T loss, real features and SentencePiece labels) must over-fit one utterance until greedy
decoding returns its transcript. Guards against a loss, label or decoding mix-up that unit tests of
each part cannot see."""
import keras
import pytest
import tensorflow as tf

from tf_todm.data.pipeline import make_dataset
from tf_todm.data.tokenizer import Tokenizer
from tf_todm.decoding import greedy_decode
from tf_todm.models.config import TransducerConfig
from tf_todm.training.config import TrainConfig
from tf_todm.training.task import TransducerTask


@pytest.mark.slow
def test_overfits_one_utterance_until_greedy_decoding_is_exact(tiny_corpus):
    tokenizer = Tokenizer(tiny_corpus["tokenizer_path"])
    utterance = max(tiny_corpus["train"][:8], key=lambda u: len(u.text.split()))
    batch = next(iter(make_dataset([utterance], tokenizer, batch_size=1, training=False, seed=0)))
    config = TransducerConfig(vocab_size=tokenizer.vocab_size, model_dim=64, num_blocks=2, ff_dim=128,
                              num_heads=2, conv_dim=64, predictor_dim=64, joiner_dim=64, dropout=0.0)
    task = TransducerTask(config, TrainConfig(loss="exact", supernet=False, specaugment=False))
    task.build()
    model, optimizer = task.model, keras.optimizers.Adam(2e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = task.compute_losses(batch, training=True)["loss"]
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    first = float(step())
    for _ in range(599):
        last = float(step())
    enc, enc_lengths = model.encode(batch["features"], batch["feature_lengths"])
    hypothesis = tokenizer.decode(greedy_decode(model, enc, enc_lengths)[0])
    assert last < 0.05 * first, (first, last)
    assert hypothesis == utterance.text, (hypothesis, utterance.text, last)
