"""Diagnostic: how many optimizer steps does an encoder need to leave the CTC plateau on this corpus?

    python -m experiments.probe_ctc_plateau --encoder=conformer --num_utterances=32 --steps=400 \
        --output_json=artifacts/probe/plateau_conformer.json

Trains a CTC head on (a) the project's Conformer encoder (`build_encoder`, 4 blocks, no dropout) or
(b) a plain 2-layer BiLSTM over 4x-strided frames, with Adam 1e-3 on the first `--num_utterances`
training utterances (features cached, batches of 16, globally normalised log-mel), and logs the
per-token CTC loss and the greedy CTC WER on 48 of those same utterances every `--eval_every` steps.
Memorisation of a small set is the easiest possible task, so the step count at which WER starts to
fall is a lower bound on the plateau of a real run. Writes {"settings", "curve": [{"step", "loss",
"train_wer", "seconds"}]}.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

flags.DEFINE_enum("encoder", "conformer", ["conformer", "bilstm"], "Encoder under test.")
flags.DEFINE_string("train_manifest", "artifacts/corpus/train.jsonl", "Training manifest.")
flags.DEFINE_string("tokenizer", None, "SentencePiece model (default: a char model trained here).")
flags.DEFINE_integer("num_utterances", 32, "First N training utterances.")
flags.DEFINE_integer("steps", 400, "Adam steps.")
flags.DEFINE_integer("eval_every", 100, "Steps between evaluations.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_string("output_json", None, "Result file.")
FLAGS = flags.FLAGS


def build(kind: str, vocab_size: int, mean, std):
    """(encode(features, lengths, training) -> (x, lengths), head, trainable-variables fn)."""
    import keras
    from tf_todm.data.features import FeatureNormalizer
    from tf_todm.models.config import TransducerConfig
    from tf_todm.models.transducer import build_encoder
    head = keras.layers.Dense(vocab_size)
    if kind == "conformer":
        encoder = build_encoder(TransducerConfig(vocab_size=vocab_size, num_blocks=4, dropout=0.0))
        encoder.subsampling.feature_norm.set_statistics(mean, std)
        return (lambda f, n, training: encoder(f, n, training=training), head,
                lambda: encoder.trainable_variables + head.trainable_variables)
    norm = FeatureNormalizer(len(mean), mean, std)
    stride = keras.layers.Conv1D(256, 4, strides=4, padding="same", activation="relu")
    rnns = [keras.layers.Bidirectional(keras.layers.LSTM(160, return_sequences=True)) for _ in range(2)]

    def encode(f, n, training):
        x = stride(norm(f))
        for rnn in rnns:
            x = rnn(x, training=training)
        return x, (n + 3) // 4
    return (encode, head, lambda: stride.trainable_variables
            + [v for r in rnns for v in r.trainable_variables] + head.trainable_variables)


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf
    from tf_todm.data.features import FeatureNormalizer
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.pipeline import make_dataset
    from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
    from tf_todm.decoding import ctc_greedy_decode
    from tf_todm.metrics import wer

    utterances = read_manifest(FLAGS.train_manifest)[:FLAGS.num_utterances]
    out = FLAGS.output_json or f"artifacts/probe/plateau_{FLAGS.encoder}.json"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    path = FLAGS.tokenizer or train_tokenizer([u.text for u in read_manifest(FLAGS.train_manifest)],
                                              os.path.splitext(out)[0] + "_char", 40, model_type="char")
    tokenizer = Tokenizer(path)
    keras.utils.set_random_seed(0)
    train = make_dataset(utterances, tokenizer, batch_size=16, training=True, cache_features=True)
    held = make_dataset(utterances[:48], tokenizer, batch_size=16, training=False)
    mean, std = FeatureNormalizer.statistics((b["features"].numpy(), b["feature_lengths"].numpy()) for b in held)
    encode, head, variables = build(FLAGS.encoder, tokenizer.vocab_size, mean, std)
    optimizer = keras.optimizers.Adam(FLAGS.learning_rate)

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            x, n = encode(batch["features"], batch["feature_lengths"], True)
            logits = head(x)
            per_utt = tf.nn.ctc_loss(batch["labels"], logits, batch["label_lengths"], n,
                                     logits_time_major=False, blank_index=0)
            loss = tf.reduce_mean(per_utt / tf.cast(batch["label_lengths"], tf.float32))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables()), 5.0)
        optimizer.apply_gradients(zip(grads, variables()))
        return loss

    def train_wer():
        refs, hyps = [], []
        for batch in held:
            x, n = encode(batch["features"], batch["feature_lengths"], False)
            ids = ctc_greedy_decode(head(x).numpy(), n.numpy())
            hyps += [tokenizer.decode(list(h)) for h in ids]
            refs += [t.decode() for t in batch["text"].numpy()]
        return float(wer(refs, hyps))

    curve, done, start, losses = [], 0, time.perf_counter(), []
    while done < FLAGS.steps:
        for batch in train:
            losses.append(float(step(batch)))
            done += 1
            if done % FLAGS.eval_every == 0:
                point = {"step": done, "loss": float(np.mean(losses[-FLAGS.eval_every:])),
                         "train_wer": train_wer(), "seconds": time.perf_counter() - start}
                curve.append(point)
                logging.info("%s step %d loss/token %.3f memorised-set WER %.3f (%.0f s)", FLAGS.encoder,
                             done, point["loss"], point["train_wer"], point["seconds"])
            if done >= FLAGS.steps:
                break
    settings = {k: FLAGS[k].value for k in ("encoder", "train_manifest", "num_utterances", "steps",
                                            "learning_rate")}
    settings["vocab_size"] = tokenizer.vocab_size
    with open(out, "w") as f:
        json.dump({"settings": settings, "curve": curve}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
