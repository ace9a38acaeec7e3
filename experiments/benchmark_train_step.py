"""Training-step speed with the losses' XLA path on vs off, side by side on the same real batches.

    python -m experiments.benchmark_train_step --flagfile=experiments/flags/single_45min.cfg \
        --tokenizer=artifacts/single_45min_8h_keep10/tokenizer.model --num_batches=200 \
        --output_json=artifacts/bench/train_step.json

Each variant runs in its own process (fresh model with the same seed, fresh XLA caches) on the
first `--num_batches` batches of epoch 0 of the flagfile's training pipeline, read into memory
before timing, so only the training step is timed: trace, XLA compilations, forward, backward and
optimizer update. Variants:
  xla      TrainConfig.xla_loss=True: vocabulary-axis work and forward-backward recursion compiled
           by XLA on shapes padded to `tf_todm.losses.shape_buckets` sizes;
  tf       xla_loss=False (the default): plain TF ops and while loops;
  default  the TrainConfig as the flags give it (lets the same script time another checkout).
The first steps' losses must agree between variants (same weights, same batch): they are
reported, and the run fails if they differ by more than 1e-3 relative.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import experiments.train_supernet as train_flags  # defines the training flags (--flagfile, --model, --train, ...)

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_batches", 200, "Training batches timed per variant (first ones of epoch 0).")
flags.DEFINE_list("variants", ["xla", "tf"], "Variants to time: xla, tf, default.")
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
flags.DEFINE_string("worker", None, "Internal: time one variant in this process and print its JSON.")

VARIANTS = ("xla", "tf", "default")
LOSS_RTOL = 1e-3


def _shape_counts(batches) -> dict:
    """Distinct loss-lattice shapes (B, ceil(T/4), U+1) of the batches, raw and bucketed."""
    from tf_todm.losses.shape_buckets import bucket_size_py
    raw = {(int(b["labels"].shape[0]), -(-int(b["features"].shape[1]) // 4), int(b["labels"].shape[1]) + 1)
           for b in batches}
    return {"raw": len(raw), "bucketed": len({tuple(bucket_size_py(n) for n in s) for s in raw})}


def time_variant(variant: str) -> dict:
    """Builds the flagfile's model and trainer and times `num_batches` training steps."""
    from tf_todm.training.task import TransducerTask
    from tf_todm.training.trainer import Trainer
    model_config, train_config = train_flags.build_configs(False)
    if variant != "default":
        train_config = train_config.replace(xla_loss=variant == "xla")
    with tempfile.TemporaryDirectory() as out_dir:
        if FLAGS.out_dir is None:  # prepare_data's default tokenizer path; --tokenizer is given
            FLAGS.out_dir = out_dir
        train_utts, _, _, tokenizer, train_config = train_flags.prepare_data(train_config)
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        task = TransducerTask(model_config, train_config, train_utts, [], tokenizer)
        trainer = Trainer(task, train_config, out_dir)
        dataset = task.make_dataset(epoch=0)
        if hasattr(trainer, "set_batch_spec"):  # as in Trainer.train: one trace for all shapes
            trainer.set_batch_spec(dataset.element_spec)
        else:  # a checkout from before set_batch_spec (the A/B against older commits)
            trainer._batch_spec = dataset.element_spec
        batches = list(dataset.take(FLAGS.num_batches))
        seconds, losses = [], []
        for i, batch in enumerate(batches):
            start = time.perf_counter()
            scalars, _ = trainer.train_step(batch, task.subnets_for_step(i))
            seconds.append(time.perf_counter() - start)
            losses.append(scalars["loss"])
    audio = sum(float(b["feature_lengths"].numpy().sum()) * 0.01 for b in batches)
    return {"variant": variant, "xla_loss": getattr(train_config, "xla_loss", None),  # None: a checkout without it
            "steps": len(seconds),
            "total_s": sum(seconds), "first_step_s": seconds[0],
            "median_step_s": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
            "second_half_s": sum(seconds[len(seconds) // 2:]),
            "audio_seconds": audio, "losses": losses[:5], "shapes": _shape_counts(batches)}


def _worker_argv(variant: str) -> list[str]:
    argv = [sys.executable, "-m", "experiments.benchmark_train_step", f"--worker={variant}"]
    for name in ("model", "train"):
        argv += [f"--{name}={v}" for v in getattr(FLAGS, name)]
    for name in ("corpus_dir", "corpus_hours", "corpus_seed", "tokenizer", "vocab_size", "out_dir",
                 "train_manifest", "dev_manifest", "num_batches"):
        value = getattr(FLAGS, name)
        if value is not None:
            argv.append(f"--{name}={value}")
    return argv


def main(argv):
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(time_variant(FLAGS.worker)))
        return
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: --variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    if not FLAGS.tokenizer and not FLAGS.out_dir:
        sys.exit("error: --tokenizer (a SentencePiece .model) or --out_dir is required")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for variant in FLAGS.variants:
        print(f"timing variant {variant} ({FLAGS.num_batches} steps) ...", flush=True)
        done = subprocess.run(_worker_argv(variant), capture_output=True, text=True, cwd=root)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.exit(f"error: variant {variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results[variant] = json.loads(lines[-1][len("RESULT "):])
        r = results[variant]
        print(f"  {variant}: {r['total_s']:.1f} s for {r['steps']} steps (first {r['first_step_s']:.1f} s, "
              f"median {r['median_step_s']:.3f} s)", flush=True)
    first = results[FLAGS.variants[0]]["losses"]
    for variant, r in results.items():
        for a, b in zip(first, r["losses"]):
            if abs(a - b) > LOSS_RTOL * max(abs(a), 1.0):
                sys.exit(f"error: variant {variant} loss {b} differs from {FLAGS.variants[0]}'s {a}")
    out = {"command": " ".join(sys.argv), "num_batches": FLAGS.num_batches, "variants": results}
    if "xla" in results and "tf" in results:
        out["speedup_total_tf_over_xla"] = results["tf"]["total_s"] / results["xla"]["total_s"]
        out["speedup_second_half_tf_over_xla"] = results["tf"]["second_half_s"] / results["xla"]["second_half_s"]
    print(json.dumps({k: v for k, v in out.items() if k != "variants"}, indent=1))
    if FLAGS.output_json:
        from tf_todm.training.checkpoints import write_json_atomic  # creates the folder
        write_json_atomic(FLAGS.output_json, out)


if __name__ == "__main__":
    app.run(main)
