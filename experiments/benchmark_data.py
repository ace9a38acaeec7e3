"""Input-pipeline throughput vs. the training consumption rate of the largest model, in one run.

  python -m experiments.benchmark_data --output_json=artifacts/bench/data.json [--manifest=train.jsonl]

Without --manifest a small default corpus is generated (tf_todm.data.synthetic) under --work_dir.
Pipeline rate = seconds of audio delivered per wall-clock second (training mode: shuffle,
decode, log-mel, in-graph SentencePiece, bucketing, SpecAugment) after warm-up batches; measured
for the in-graph WAV decoder, the soundfile decoder and cached features. Consumption rate = seconds
of audio per second of one forward+backward step of the default `TransducerConfig` (full RNN-T
lattice loss) on a batch of the same pipeline; if `tf_todm.models.transducer` cannot be used, a
Keras Conformer-sized stand-in (clearly labelled) is timed instead. Target: pipeline >= 20x.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

_MANIFEST = flags.DEFINE_string("manifest", None, "JSONL manifest to read (default: generate a corpus).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Folder for the generated corpus and tokenizer (default: temp).")
_HOURS = flags.DEFINE_float("corpus_hours", 0.05, "Hours of the generated corpus (when no --manifest).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of corpus, shuffle and SpecAugment.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Utterances per batch.")
_VOCAB = flags.DEFINE_integer("vocab_size", 128, "SentencePiece vocabulary (trained on the manifest texts).")
_WARMUP = flags.DEFINE_integer("warmup_batches", 3, "Batches (or steps) before timing starts.")
_BATCHES = flags.DEFINE_integer("num_batches", 30, "Timed pipeline batches per variant.")
_STEPS = flags.DEFINE_integer("num_steps", 3, "Timed forward+backward steps.")
_CONFIG = flags.DEFINE_string("model_config_json", None,
                              "TransducerConfig JSON of the model to time (default: TransducerConfig() = the supernet).")
_STAND_IN = flags.DEFINE_bool("force_stand_in", False, "Time the Keras stand-in even if the Transducer imports.")
_OUTPUT = flags.DEFINE_string("output_json", None, "Where to write the JSON result.")

TARGET_RATIO = 20.0


def build_corpus(work_dir: str):
    from tf_todm.data import synthetic
    from tf_todm.data.manifest import read_manifest

    corpus_dir = os.path.join(work_dir, "corpus")
    if not os.path.isfile(os.path.join(corpus_dir, "train.jsonl")):
        synthetic.generate_corpus(corpus_dir, _HOURS.value, _SEED.value, progress=False)
    return read_manifest(os.path.join(corpus_dir, "train.jsonl"))


def pipeline_rate(utterances, tokenizer, **kwargs) -> dict:
    from tf_todm.data.pipeline import batch_seconds, make_dataset

    t0 = time.perf_counter()
    ds = make_dataset(utterances, tokenizer, batch_size=_BATCH.value, training=True, seed=_SEED.value, **kwargs)
    build_s = time.perf_counter() - t0
    it = iter(ds.repeat())
    for _ in range(_WARMUP.value):
        next(it)
    audio_s, start = 0.0, time.perf_counter()
    for _ in range(_BATCHES.value):
        batch = next(it)
        audio_s += batch_seconds(batch["feature_lengths"].numpy())
    wall = time.perf_counter() - start
    return {"audio_s": audio_s, "wall_s": wall, "rate": audio_s / wall, "build_s": build_s,
            "decoder": ds.data_report.decoder}


def transducer_step(vocab_size):
    """Default-config Transducer, full-lattice RNN-T loss; returns (step_fn, num_params, label)."""
    import tensorflow as tf

    from tf_todm.losses import rnnt_loss
    from tf_todm.models.config import TransducerConfig
    from tf_todm.models.transducer import Transducer

    if _CONFIG.value:
        with open(_CONFIG.value) as f:
            config = TransducerConfig.from_json(f.read()).replace(vocab_size=vocab_size)
    else:
        config = TransducerConfig(vocab_size=vocab_size)
    model = Transducer(config)

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            enc, enc_lengths = model.encode(batch["features"], batch["feature_lengths"], training=True)
            pred = model.predict(batch["labels"], training=True)
            logits = model.joiner.join(model.joiner.project_encoder(enc)[:, :, None, :],
                                       model.joiner.project_predictor(pred)[:, None, :, :])
            loss = tf.reduce_mean(rnnt_loss(logits, batch["labels"], enc_lengths, batch["label_lengths"]))
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, grads

    label = (f"Transducer {'--model_config_json' if _CONFIG.value else 'default config'} (d={config.model_dim}, {config.num_blocks} blocks, "
             f"{config.predictor_type} predictor), full-lattice rnnt_loss")
    return step, model.count_params(), label


def stand_in_step(vocab_size):
    """Keras stand-in of Conformer size (d=144, 6 blocks, ff 576, 4 heads, conv k=15) + CTC-free linear loss."""
    import keras
    import tensorflow as tf

    d, blocks, ff, heads, kernel = 144, 6, 576, 4, 15

    def conformer_block(x):
        y = keras.layers.LayerNormalization()(x)
        y = keras.layers.Dense(ff, activation="swish")(y)
        x = x + 0.5 * keras.layers.Dense(d)(y)
        y = keras.layers.LayerNormalization()(x)
        x = x + keras.layers.MultiHeadAttention(heads, d // heads)(y, y)
        y = keras.layers.LayerNormalization()(x)
        y = keras.layers.Dense(2 * d)(y)
        y = y[..., :d] * keras.ops.sigmoid(y[..., d:])
        y = keras.layers.DepthwiseConv1D(kernel, padding="same")(y)
        y = keras.layers.BatchNormalization()(y)
        x = x + keras.layers.Dense(d)(keras.ops.silu(y))
        y = keras.layers.LayerNormalization()(x)
        y = keras.layers.Dense(ff, activation="swish")(y)
        return keras.layers.LayerNormalization()(x + 0.5 * keras.layers.Dense(d)(y))

    inp = keras.Input((None, 80))
    x = keras.layers.Reshape((-1, 80, 1))(inp)
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(x)
    x = keras.layers.Reshape((-1, 19 * 64))(x)
    x = keras.layers.Dense(d)(x)
    for _ in range(blocks):
        x = conformer_block(x)
    model = keras.Model(inp, keras.layers.Dense(vocab_size)(x))

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            logits = model(batch["features"], training=True)
            loss = tf.reduce_mean(tf.reduce_logsumexp(logits, axis=-1))
        return loss, tape.gradient(loss, model.trainable_variables)

    return step, model.count_params(), f"STAND-IN Keras Conformer stack (d={d}, {blocks} blocks), no transducer loss"


def consumption_rate(utterances, tokenizer) -> dict:
    from tf_todm.data.pipeline import batch_seconds, make_dataset

    batch = next(iter(make_dataset(utterances, tokenizer, batch_size=_BATCH.value, training=True,
                                   seed=_SEED.value, bucket_boundaries_s=[])))
    model_error = None
    kind = "stand_in"
    if not _STAND_IN.value:
        try:
            step, params, label = transducer_step(tokenizer.vocab_size)
            step(batch)
            kind = "transducer"
        except Exception as e:  # the model is written in parallel: fall back, and say why
            model_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    if kind == "stand_in":
        step, params, label = stand_in_step(tokenizer.vocab_size)
    for _ in range(_WARMUP.value):
        step(batch)
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        loss, _ = step(batch)
        float(loss)
    wall = (time.perf_counter() - start) / _STEPS.value
    audio = batch_seconds(batch["feature_lengths"].numpy())
    return {"kind": kind, "label": label, "params": int(params), "batch_size": int(batch["features"].shape[0]),
            "batch_audio_s": audio, "batch_frames": int(batch["features"].shape[1]), "step_s": wall,
            "rate": audio / wall, "transducer_error": model_error}


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 1
    if not _OUTPUT.value:
        print("error: --output_json is required", file=sys.stderr)
        return 1
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.pipeline import utterance_seconds
    from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
    from tf_todm.data.specaugment import SpecAugment

    try:
        work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="benchmark_data-")
        os.makedirs(work_dir, exist_ok=True)
        utterances = read_manifest(_MANIFEST.value) if _MANIFEST.value else build_corpus(work_dir)
        tokenizer = Tokenizer(train_tokenizer([u.text for u in utterances], os.path.join(work_dir, "tok"),
                                              _VOCAB.value))
        spec = SpecAugment()
        variants = {"wav_in_graph": pipeline_rate(utterances, tokenizer, specaugment=spec)}
        variants["soundfile"] = pipeline_rate(utterances, tokenizer, specaugment=spec, decoder="soundfile")
        variants["cached_features"] = pipeline_rate(utterances, tokenizer, specaugment=spec, cache_features=True)
        model = consumption_rate(utterances, tokenizer)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    default = variants["wav_in_graph"] if variants["wav_in_graph"]["decoder"] == "wav" else variants["soundfile"]
    result = {
        "command": " ".join(sys.argv),
        "corpus": {"manifest": _MANIFEST.value, "utterances": len(utterances),
                   "hours": utterance_seconds(utterances) / 3600.0},
        "batch_size": _BATCH.value, "pipeline": variants, "model": model,
        "ratio_default_pipeline_to_model": default["rate"] / model["rate"],
        "ratios": {k: v["rate"] / model["rate"] for k, v in variants.items()},
        "target_ratio": TARGET_RATIO,
        "meets_target": default["rate"] / model["rate"] >= TARGET_RATIO,
        "note": "pipeline and model timed one after the other in this process on the same cores",
    }
    os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
    with open(_OUTPUT.value, "w") as f:
        json.dump(result, f, indent=2)
    print(f"corpus: {len(utterances)} utterances, {result['corpus']['hours']:.3f} h; batch {_BATCH.value}")
    print(f"{'variant':<18}{'audio s':>10}{'wall s':>9}{'audio s/s':>11}{'x model':>9}")
    for k, v in variants.items():
        print(f"{k:<18}{v['audio_s']:>10.1f}{v['wall_s']:>9.2f}{v['rate']:>11.1f}{v['rate'] / model['rate']:>9.1f}")
    print(f"{'model step':<18}{model['batch_audio_s']:>10.1f}{model['step_s']:>9.2f}{model['rate']:>11.1f}{1.0:>9.1f}"
          f"   [{model['label']}, {model['params']:,} params]")
    if model["transducer_error"]:
        print(f"(Transducer not usable, stand-in timed: {model['transducer_error']})")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"ratio pipeline/model = {result['ratio_default_pipeline_to_model']:.1f}x ({verdict} target "
          f">= {TARGET_RATIO:.0f}x); JSON: {_OUTPUT.value}")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
