"""Diagnostic: how many optimizer steps does an encoder need to leave the CTC plateau on this corpus?

    python -m experiments.probe_ctc_plateau --encoder=conformer --num_utterances=32 --steps=400 \
        --output_json=artifacts/probe/plateau_conformer.json

Trains a CTC head on (a) the project's Conformer encoder (`build_encoder`, 4 blocks, no dropout) or
(b) a plain 2-layer BiLSTM over 4x-strided frames, with Adam 1e-3 on the first `--num_utterances`
training utterances (features cached, batches of 16, globally normalised log-mel), and logs the
per-token CTC loss and the greedy CTC WER on 48 of those same utterances every `--eval_every` steps.
Memorisation of a small set is the easiest possible task, so the step count at which WER starts to
fall is a lower bound on the plateau of a real run. Variants for ablations (all off by default):
per-utterance mean removal, BiLSTM stride and BatchNorm, Conformer module ablation / input scale /
subsampling BatchNorm (patched into the built encoder, never into the library), batch size, a
small-subset warm start (curriculum), and dev WER on `--dev_manifest`. Writes {"settings", "curve": [{"step", "loss",
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
flags.DEFINE_enum("normalization", "global", ["global", "utterance"],
                  "global: training mean/std per bin; utterance: subtract each utterance's own mean per bin.")
flags.DEFINE_integer("bilstm_stride", 4, "Frame stride of the BiLSTM's input convolution.")
flags.DEFINE_integer("batch_size", 16, "Utterances per batch.")
flags.DEFINE_enum("bilstm_frontend", "conv1d", ["conv1d", "conformer_subsampling"],
                  "BiLSTM input stage: Conv1D(256, stride) + ReLU, or the Conformer's ConvSubsampling (4x).")
flags.DEFINE_bool("bilstm_batch_norm", False, "BatchNorm after the BiLSTM's input convolution (DeepSpeech2).")
flags.DEFINE_float("conformer_input_scale", 1.0,
                   "Conformer: TransducerConfig.subsampling_output_scale (ESPnet uses sqrt(D)).")
flags.DEFINE_integer("conformer_blocks", 4, "Conformer blocks.")
flags.DEFINE_enum("conformer_ablate", "none", ["none", "attention", "conv"],
                  "Conformer: replace this module's residual branch with zeros in every block (probe-only).")
flags.DEFINE_bool("conformer_conv1d_frontend", False,
                  "Conformer: the BiLSTM's front end, 4 stacked frames -> Dense(256) + ReLU -> Dense(D), i.e. "
                  "TransducerConfig(subsampling='stack', subsampling_channels=256).")
flags.DEFINE_bool("conformer_conv_batch_norm", False,
                  "Conformer: BatchNorm instead of the conv module's channel LayerNorm after the depthwise conv, "
                  "as in the Conformer paper: TransducerConfig.conv_norm='batch' (probes before 2026-11-21 used a "
                  "Keras BatchNormalization patch whose statistics included padded frames).")
flags.DEFINE_bool("conformer_subsampling_batch_norm", False,
                  "Conformer: BatchNorm between each subsampling Conv2D and its ReLU (probe-only patch).")
flags.DEFINE_integer("warm_start_utterances", 0,
                     "Curriculum: train the first --warm_start_steps on only this many utterances (0 = off).")
flags.DEFINE_integer("warm_start_steps", 0, "Steps of the small-subset warm start.")
flags.DEFINE_string("dev_manifest", None, "Optional unseen manifest: its first 48 utterances give dev WER.")
FLAGS = flags.FLAGS
SETTINGS = ("encoder", "train_manifest", "tokenizer", "num_utterances", "steps", "learning_rate", "normalization",
            "bilstm_stride", "batch_size", "bilstm_frontend", "bilstm_batch_norm", "conformer_blocks",
            "conformer_ablate", "conformer_input_scale", "conformer_conv1d_frontend", "conformer_conv_batch_norm",
            "conformer_subsampling_batch_norm", "warm_start_utterances", "warm_start_steps", "dev_manifest")


# Whether the current encoder call is a training step: read by the probe-only BatchNorm patches, which
# replace layer methods that do not receive `training`.
_MODE = {"training": True}


def build(kind: str, vocab_size: int, mean, std):
    """(encode(features, lengths, training) -> (x, lengths), head, trainable-variables fn)."""
    import keras
    from tf_todm.data.features import FeatureNormalizer
    from tf_todm.models.config import TransducerConfig
    from tf_todm.models.transducer import build_encoder
    head = keras.layers.Dense(vocab_size)
    if kind == "conformer":
        encoder = build_encoder(TransducerConfig(
            vocab_size=vocab_size, num_blocks=FLAGS.conformer_blocks, dropout=0.0,
            conv_norm="batch" if FLAGS.conformer_conv_batch_norm else "layer",
            subsampling_output_scale=FLAGS.conformer_input_scale,
            subsampling="stack" if FLAGS.conformer_conv1d_frontend else "conv2d",
            subsampling_channels=256 if FLAGS.conformer_conv1d_frontend else 64))
        encoder.subsampling.feature_norm.set_statistics(mean, std)
        extra = patch_conformer(encoder)

        def encode_conformer(f, n, training):
            _MODE["training"] = training
            return encoder(f, n, training=training)
        return (encode_conformer, head, lambda: encoder.trainable_variables + head.trainable_variables
                + [v for layer in extra for v in layer.trainable_variables])
    norm = FeatureNormalizer(len(mean), mean, std)
    k = FLAGS.bilstm_stride
    stride = keras.layers.Conv1D(256, k, strides=k, padding="same", activation="relu")
    rnns = [keras.layers.Bidirectional(keras.layers.LSTM(160, return_sequences=True)) for _ in range(2)]

    batch_norm = keras.layers.BatchNormalization() if FLAGS.bilstm_batch_norm else None

    if FLAGS.bilstm_frontend == "conformer_subsampling":
        from tf_todm.models.subsampling import ConvSubsampling, subsampled_lengths
        subsampling = ConvSubsampling(len(mean), 64, 144)
        subsampling.feature_norm.set_statistics(mean, std)
        stride = keras.layers.Lambda(lambda x: x)  # the subsampling normalises and strides itself
        norm = subsampling
        k_lengths = subsampled_lengths
    else:
        k_lengths = lambda n: (n + k - 1) // k

    def encode(f, n, training):
        x = stride(norm(f))
        if batch_norm is not None:
            x = batch_norm(x, training=training)
        for rnn in rnns:
            x = rnn(x, training=training)
        return x, k_lengths(n)
    return (encode, head, lambda: stride.trainable_variables + norm.trainable_variables
            + (batch_norm.trainable_variables if batch_norm is not None else [])
            + [v for r in rnns for v in r.trainable_variables] + head.trainable_variables)


def patch_conformer(encoder) -> list:
    """Applies the probe-only Conformer variants chosen by flags; returns layers added outside the encoder."""
    import tensorflow as tf
    extra = []
    if FLAGS.conformer_subsampling_batch_norm:
        extra = patch_subsampling_batch_norm(encoder.subsampling)
    if FLAGS.conformer_ablate != "none":
        encoder.build()
        for block in encoder.blocks:
            object.__setattr__(block, FLAGS.conformer_ablate, lambda x, **kwargs: tf.zeros_like(x))
    return extra


def patch_subsampling_batch_norm(sub):
    """Probe-only: conv -> BatchNorm -> ReLU in a built `ConvSubsampling` (returns the BN layers)."""
    import keras
    import tensorflow as tf
    bns = [keras.layers.BatchNormalization(), keras.layers.BatchNormalization()]
    for conv in (sub.conv1, sub.conv2):
        conv.activation = keras.activations.linear

    def call(features, *args, **kwargs):
        training = _MODE["training"]
        x = sub.feature_norm(features)[..., tf.newaxis]
        for conv, bn in zip((sub.conv1, sub.conv2), bns):
            x = tf.nn.relu(bn(conv(tf.pad(x, [[0, 0], [2, 0], [0, 0], [0, 0]])), training=training))
        return sub._project(x)
    sub.call = call
    return bns


def utterance_mean_removed(batch):
    """Subtracts each utterance's mean log-mel per bin over its valid frames (padding stays 0)."""
    import tensorflow as tf
    f = batch["features"]
    valid = tf.sequence_mask(batch["feature_lengths"], tf.shape(f)[1], f.dtype)[..., None]
    mean = tf.reduce_sum(f * valid, 1, keepdims=True) / tf.maximum(tf.reduce_sum(valid, 1, keepdims=True), 1.0)
    return {**batch, "features": (f - mean) * valid}


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf
    from tf_todm.data.features import FeatureNormalizer
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.pipeline import make_dataset
    from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
    from tf_todm.decoding import ctc_greedy_decode, transcribe
    from tf_todm.metrics import wer

    utterances = read_manifest(FLAGS.train_manifest)[:FLAGS.num_utterances]
    out = FLAGS.output_json or f"artifacts/probe/plateau_{FLAGS.encoder}.json"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    path = FLAGS.tokenizer or train_tokenizer([u.text for u in read_manifest(FLAGS.train_manifest)],
                                              os.path.splitext(out)[0] + "_char", 40, model_type="char")
    tokenizer = Tokenizer(path)
    keras.utils.set_random_seed(0)
    train = make_dataset(utterances, tokenizer, batch_size=FLAGS.batch_size, training=True, cache_features=True)
    held = make_dataset(utterances[:48], tokenizer, batch_size=16, training=False)
    warm = make_dataset(utterances[:FLAGS.warm_start_utterances or 1], tokenizer, batch_size=FLAGS.batch_size,
                        training=True, cache_features=True)
    dev = (make_dataset(read_manifest(FLAGS.dev_manifest)[:48], tokenizer, batch_size=16, training=False)
           if FLAGS.dev_manifest else None)
    if FLAGS.normalization == "utterance":
        train, held, warm = (d.map(utterance_mean_removed) for d in (train, held, warm))
        dev = dev.map(utterance_mean_removed) if dev is not None else None
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

    def ctc_ids(batch):
        x, n = encode(batch["features"], batch["feature_lengths"], False)
        return ctc_greedy_decode(head(x).numpy(), n.numpy())

    def greedy_wer(dataset):
        return float(wer(*transcribe(dataset, tokenizer, ctc_ids)))

    def write(curve):
        settings = {name: FLAGS[name].value for name in SETTINGS}
        settings["vocab_size"] = tokenizer.vocab_size
        # the Conformer's BatchNorm and stacked front end are TransducerConfig options (earlier JSONs
        # lack this key: they came from probe-only patches, see workspace_results)
        settings["implementation"] = "library"
        with open(out, "w") as f:
            json.dump({"settings": settings, "curve": curve}, f, indent=1)

    curve, done, start, losses = [], 0, time.perf_counter(), []
    warm_steps = FLAGS.warm_start_steps if FLAGS.warm_start_utterances else 0
    while done < FLAGS.steps:
        for batch in (warm if done < warm_steps else train):
            losses.append(float(step(batch)))
            done += 1
            if done % FLAGS.eval_every == 0:
                point = {"step": done, "loss": float(np.mean(losses[-FLAGS.eval_every:])),
                         "train_wer": greedy_wer(held), "seconds": time.perf_counter() - start}
                if dev is not None:
                    point["dev_wer"] = greedy_wer(dev)
                curve.append(point)
                write(curve)  # after every point, so a long probe stopped early keeps its curve
                logging.info("%s step %d loss/token %.3f memorised-set WER %.3f dev WER %s (%.0f s)",
                             FLAGS.encoder, done, point["loss"], point["train_wer"], point.get("dev_wer"),
                             point["seconds"])
            if done >= FLAGS.steps or (done == warm_steps and warm_steps):
                break
    write(curve)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
