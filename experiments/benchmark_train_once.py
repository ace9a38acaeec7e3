"""Benchmark: train once (one supernet serving 3 deployment sizes) vs train 3 models separately.

    python -m experiments.benchmark_train_once --flagfile=experiments/flags/supernet_tiny.cfg \
        --out_dir=artifacts/benchmark_train_once --train=num_epochs=2

Measured side by side in one run, same data, same number of epochs:
  (a) wall time of the supernet training vs the SUM of training the 3 architectures alone;
  (b) each size's test WER with the supernet's weights (no fine-tuning) vs the architecture
      trained alone, and its parameter count.
Writes `<out_dir>/result.json` and `<out_dir>/wer_vs_params.png`, and prints a table. Model and
training flags are those of `experiments.train_supernet` (`--model`, `--train`, corpus flags).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

from experiments import train_supernet as ts

FLAGS = flags.FLAGS
flags.DEFINE_string("sizes", "largest,middle,smallest",
                    "Deployment sizes: comma list of largest|middle|smallest.")
flags.DEFINE_integer("test_max_utterances", 400, "Test utterances decoded per model.")


def deployment_subnets(space, names):
    """{name: SubnetConfig}: the largest, smallest and a middle member of the space."""
    from tf_todm.models.elastic_space import SubnetConfig

    def mid(choices):
        return choices[len(choices) // 2]

    n = mid(space.num_blocks_choices)
    table = {
        "largest": space.largest(),
        "smallest": space.smallest(),
        "middle": SubnetConfig(n, (mid(space.ff_dim_choices),) * n, (mid(space.num_heads_choices),) * n,
                               (mid(space.conv_dim_choices),) * n, mid(space.predictor_dim_choices),
                               mid(space.joiner_dim_choices)),
    }
    unknown = [x for x in names if x not in table]
    if unknown:
        raise ValueError(f"--sizes: unknown size {unknown[0]!r}; expected largest, middle, smallest")
    return {x: table[x] for x in names}


def train_and_test(model_config, train_config, out_dir, train_utts, dev_utts, test_utts, tokenizer,
                   eval_subnets, space=None):
    """Trains (fresh out_dir) and returns (wall seconds, summary, {name: test WER})."""
    from tf_todm.training.task import TransducerTask
    from tf_todm.training.trainer import Trainer
    if os.path.exists(os.path.join(out_dir, "ckpt")):
        raise ValueError(f"{out_dir}: already holds a checkpoint; use a fresh --out_dir")
    task = TransducerTask(model_config, train_config, train_utts, dev_utts, tokenizer, space=space,
                          eval_subnets=eval_subnets)
    trainer = Trainer(task, train_config, out_dir, extra_config={"model": model_config.to_dict()})
    start = time.perf_counter()
    summary = trainer.train()
    seconds = time.perf_counter() - start
    task.dev_utterances = test_utts  # decode the TEST set now
    wers = task.evaluate(FLAGS.test_max_utterances)
    return seconds, summary, {k.split("/", 1)[1]: v for k, v in wers.items()}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    params = [r["params"] for r in rows]
    ax.plot(params, [100 * r["wer_supernet"] for r in rows], "o-", label="supernet (train once)")
    ax.plot(params, [100 * r["wer_alone"] for r in rows], "s--", label="trained alone")
    for r in rows:
        ax.annotate(r["size"], (r["params"], 100 * r["wer_supernet"]), fontsize=8)
    ax.set_xlabel("parameters")
    ax.set_ylabel("test WER (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run() -> dict:
    from tf_todm.data.manifest import read_manifest
    from tf_todm.export.extract import subnet_model_config
    from tf_todm.models.config import search_space
    from tf_todm.models.param_count import count_params
    from tf_todm.training.checkpoints import write_json_atomic
    if not FLAGS.out_dir:
        raise ValueError("--out_dir is required")
    model_config, train_config = ts.build_configs(supernet=True)
    ts.prepare_corpus(FLAGS.corpus_dir, FLAGS.corpus_hours, FLAGS.corpus_seed, FLAGS.corpus_extra_train_voices)
    split = lambda s: read_manifest(os.path.join(FLAGS.corpus_dir, f"{s}.jsonl"))  # noqa: E731
    train_utts = read_manifest(FLAGS.train_manifest) if FLAGS.train_manifest else split("train")
    dev_utts = read_manifest(FLAGS.dev_manifest) if FLAGS.dev_manifest else split("dev")
    test_utts = split("test")
    tokenizer = ts.prepare_tokenizer(FLAGS.tokenizer or os.path.join(FLAGS.out_dir, "tokenizer.model"),
                                     [u.text for u in train_utts], FLAGS.vocab_size)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    space = search_space(model_config)
    subnets = deployment_subnets(space, [s.strip() for s in FLAGS.sizes.split(",") if s.strip()])

    logging.info("training the supernet once")
    super_seconds, super_summary, super_wers = train_and_test(
        model_config, train_config, os.path.join(FLAGS.out_dir, "supernet"), train_utts, dev_utts,
        test_utts, tokenizer, subnets, space=space)
    rows = []
    alone_total = 0.0
    for name, subnet in subnets.items():
        logging.info("training %s alone", name)
        single_config = subnet_model_config(model_config, subnet)
        seconds, summary, wers = train_and_test(
            single_config, train_config.replace(supernet=False),
            os.path.join(FLAGS.out_dir, f"alone_{name}"), train_utts, dev_utts, test_utts,
            tokenizer, {"model": None})
        alone_total += seconds
        rows.append({"size": name, "subnet": subnet.to_dict(),
                     "params": count_params(model_config, subnet),
                     "wer_supernet": super_wers[name], "wer_alone": wers["model"],
                     "alone_seconds": seconds, "alone_steps": summary["step"]})
    result = {
        "command": " ".join(sys.argv),
        "model": model_config.to_dict(), "train": train_config.to_dict(),
        "train_hours": sum(u.duration for u in train_utts) / 3600,
        "test_utterances": min(len(test_utts), FLAGS.test_max_utterances),
        "supernet_seconds": super_seconds, "supernet_steps": super_summary["step"],
        "alone_seconds_total": alone_total,
        "time_ratio_supernet_over_sum_alone": super_seconds / alone_total,
        "sizes": rows,
    }
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_json_atomic(os.path.join(FLAGS.out_dir, "result.json"), result)
    plot(rows, os.path.join(FLAGS.out_dir, "wer_vs_params.png"))
    print(f"\ntrain once: supernet {super_seconds:.1f} s vs 3 models alone {alone_total:.1f} s "
          f"(ratio {result['time_ratio_supernet_over_sum_alone']:.2f})")
    print(f"{'size':<9} {'params':>9} {'WER supernet':>13} {'WER alone':>10} {'alone s':>8}")
    for r in rows:
        print(f"{r['size']:<9} {r['params']:>9d} {100 * r['wer_supernet']:>12.1f}% "
              f"{100 * r['wer_alone']:>9.1f}% {r['alone_seconds']:>8.1f}")
    return result


def main(argv):
    del argv
    from tf_todm.training.trainer import NonFiniteLossError
    try:
        run()
    except (ValueError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
