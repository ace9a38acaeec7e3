"""Train the elastic Conformer-Transducer supernet (sandwich rule + in-place alpha-divergence KD).

    python -m experiments.train_supernet --flagfile=experiments/flags/supernet_small.cfg \
        --out_dir=artifacts/supernet_small [--max_train_minutes=30]

Data defaults to the generated default corpus under artifacts/corpus (generated if missing);
the tokenizer defaults to `<out_dir>/tokenizer.model` (trained on the training texts if missing).
Model and training hyperparameters are `key=value` overrides of `TransducerConfig` (`--model`)
and `TrainConfig` (`--train`); an unknown key is an error. Killed runs resume from the last
checkpoint in `<out_dir>/ckpt` when restarted with the same flags.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Run folder (config.json, ckpt/, tb/, tokenizer.model).")
flags.DEFINE_string("train_manifest", None, "Training JSONL manifest (default: <corpus_dir>/train.jsonl).")
flags.DEFINE_string("dev_manifest", None, "Dev JSONL manifest (default: <corpus_dir>/dev.jsonl).")
flags.DEFINE_string("corpus_dir", "artifacts/corpus", "Default corpus folder (generated if missing).")
flags.DEFINE_float("corpus_hours", 1.0, "Hours of the default corpus when it has to be generated.")
flags.DEFINE_integer("corpus_seed", 0, "Seed of the default corpus when it has to be generated.")
flags.DEFINE_list("corpus_extra_train_voices", [],
                  "Voices (or set names such as flite8) the corpus adds to its train split only, as "
                  "`make_corpus --extra_train_voices`; an existing --corpus_dir made with other extra "
                  "voices is refused.")
flags.DEFINE_string("tokenizer", None, "SentencePiece model (default: <out_dir>/tokenizer.model; "
                    "trained if missing).")
flags.DEFINE_integer("vocab_size", 256, "Vocabulary size when a tokenizer has to be trained.")
flags.DEFINE_multi_string("model", [], "TransducerConfig override key=value (repeatable).")
flags.DEFINE_multi_string("train", [], "TrainConfig override key=value (repeatable).")
flags.DEFINE_float("max_train_minutes", None, "Wall-clock limit; stops with a final checkpoint.")
flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker"],
                  "Distribution strategy (overrides train strategy=...).")
flags.DEFINE_integer("num_replicas", None, "Logical CPU devices for strategy=mirrored.")
flags.DEFINE_float("step_delay_seconds", 0.0, "Testing aid: sleep after every step.")
flags.DEFINE_string("subnet", None, "train_single only: SubnetConfig JSON (or a file holding it); "
                    "trains that architecture of the --model supernet alone.")

SUPERNET = True


def prepare_corpus(corpus_dir: str, hours: float, seed: int, extra_train_voices=()) -> None:
    """Kept for the benchmark CLIs: `tf_todm.data.synthetic.ensure_default_corpus`."""
    from tf_todm.data.synthetic import ensure_default_corpus
    ensure_default_corpus(corpus_dir, hours, seed, extra_train_voices)


def prepare_tokenizer(path: str, texts, vocab_size: int):
    """Kept for the benchmark CLIs: `tf_todm.data.tokenizer.load_or_train_tokenizer`, with the
    --tokenizer flag named when the path does not end in .model."""
    from tf_todm.data.tokenizer import load_or_train_tokenizer
    if not os.path.exists(path) and not path.endswith(".model"):
        raise ValueError(f"--tokenizer={path}: expected a path ending in .model")
    return load_or_train_tokenizer(path, texts, vocab_size)


def build_configs(supernet: bool):
    """(TransducerConfig, TrainConfig) from the flags; vocab size from the tokenizer later."""
    from tf_todm.models.config import TransducerConfig
    from tf_todm.training.config import TrainConfig, parse_overrides
    train_config = parse_overrides(TrainConfig(supernet=supernet), FLAGS.train)
    overrides = {}
    if FLAGS.max_train_minutes is not None:
        overrides["max_train_minutes"] = FLAGS.max_train_minutes
    if FLAGS.strategy is not None:
        overrides["strategy"] = FLAGS.strategy
    if FLAGS.num_replicas is not None:
        overrides["num_replicas"] = FLAGS.num_replicas
    train_config = train_config.replace(**overrides)
    model_config = parse_overrides(TransducerConfig(), FLAGS.model)
    if not supernet and FLAGS.subnet:
        # Train one architecture of the supernet's space alone (same per-block widths).
        from tf_todm.export.extract import subnet_model_config
        from tf_todm.models.elastic_space import SubnetConfig
        text = FLAGS.subnet
        if os.path.exists(text):
            with open(text) as f:
                text = f.read()
        try:
            subnet = SubnetConfig.from_json(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--subnet: not JSON ({e})") from None
        model_config = subnet_model_config(model_config, subnet)
    return model_config, train_config


def prepare_data(train_config, run_with_tokenizer=None, test_manifest=None):
    """Manifests (default corpus generated if missing) and tokenizer from the flags.

    Returns (train_utts, dev_utts, test_utts, tokenizer, train_config with the resolved absolute
    paths). `run_with_tokenizer`: a run folder whose `tokenizer.model` is the default tokenizer.
    `test_manifest`: default `<corpus_dir>/test.jsonl`; test_utts is empty when it does not exist.
    """
    from tf_todm.data.manifest import read_manifest
    if FLAGS.train_manifest is None or FLAGS.dev_manifest is None:
        prepare_corpus(FLAGS.corpus_dir, FLAGS.corpus_hours, FLAGS.corpus_seed, FLAGS.corpus_extra_train_voices)
    train_manifest = FLAGS.train_manifest or os.path.join(FLAGS.corpus_dir, "train.jsonl")
    dev_manifest = FLAGS.dev_manifest or os.path.join(FLAGS.corpus_dir, "dev.jsonl")
    test_manifest = test_manifest or os.path.join(FLAGS.corpus_dir, "test.jsonl")
    train_utts, dev_utts = read_manifest(train_manifest), read_manifest(dev_manifest)
    test_utts = read_manifest(test_manifest) if os.path.exists(test_manifest) else []
    default_tokenizer = (os.path.join(run_with_tokenizer, "tokenizer.model") if run_with_tokenizer
                         else os.path.join(FLAGS.out_dir, "tokenizer.model"))
    tokenizer_path = FLAGS.tokenizer or default_tokenizer
    tokenizer = prepare_tokenizer(tokenizer_path, [u.text for u in train_utts], FLAGS.vocab_size)
    train_config = train_config.replace(train_manifest=os.path.abspath(train_manifest),
                                        dev_manifest=os.path.abspath(dev_manifest),
                                        tokenizer_path=os.path.abspath(tokenizer_path))
    return train_utts, dev_utts, test_utts, tokenizer, train_config


def run(supernet: bool) -> dict:
    if not FLAGS.out_dir:
        raise ValueError("--out_dir is required")
    model_config, train_config = build_configs(supernet)
    # The strategy must exist before TensorFlow initialises its devices.
    from tf_todm.training.trainer import make_strategy, run_training
    strategy = make_strategy(train_config.strategy, train_config.num_replicas)
    train_utts, dev_utts, _, tokenizer, train_config = prepare_data(train_config)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    summary = run_training(model_config, train_config, FLAGS.out_dir, train_utterances=train_utts,
                           dev_utterances=dev_utts, tokenizer=tokenizer, strategy=strategy,
                           step_delay_seconds=FLAGS.step_delay_seconds)
    print(json.dumps({k: v for k, v in summary.items() if k != "last_scalars"}, indent=1,
                     sort_keys=True, default=str))
    return summary


def main_for(supernet: bool):
    def main(argv):
        del argv
        from tf_todm.training.trainer import NonFiniteLossError
        try:
            run(supernet)
        except (ValueError, NonFiniteLossError) as e:  # one line, exit 1
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
    return main


if __name__ == "__main__":
    app.run(main_for(SUPERNET))
