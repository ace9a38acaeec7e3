"""Multi-stage progressive distillation of a Conformer-Transducer (tf_todm.recipes.progressive_kd).

    python -m experiments.train_progressive_kd --flagfile=experiments/flags/progressive_kd_small.cfg \
        --out_dir=artifacts/progressive_kd_small [--teacher_run=artifacts/single_small]

Stage k distils stage k-1's student (stage 1: the teacher) into the size given by the k-th entry
of `--stage_num_blocks`, `--stage_ff_dims`, `--stage_num_heads`, `--stage_conv_dims`,
`--stage_predictor_dims`, `--stage_joiner_dims` (and optionally `--stage_model_dims`). Loss:
`label_loss_weight` x RNN-T + `kd_weight` x KL(p_teacher || q_student) over the lattice
(`--train=loss=exact`) or the teacher's pruned band (`--train=loss=pruned`); the weights are
`--train=kd_weight=...` / `--train=label_loss_weight=...`. Students are the teacher's slices
(`extract_subnet`) when the widths allow, else random (recorded per stage as "init").
`--epochs_per_stage` epochs each. With `--baselines` the same final size is also trained by
one-shot distillation from the first teacher and from scratch (same epochs as ALL stages together),
and test WERs are compared. Without `--teacher_run` a teacher is trained from the `--model`
config for `--teacher_epochs` epochs in `<out_dir>/teacher`. Writes `<out_dir>/stage<k>/`,
`<out_dir>/result.json`. User errors print one line and exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app, flags, logging

from experiments import train_supernet as ts

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_run", None, "Trainer run folder of the first teacher Transducer.")
flags.DEFINE_integer("teacher_average_last", 1, "The first teacher is the mean of --teacher_run's newest N "
                     "checkpoints (as `evaluate_run --average_last` decodes it).", lower_bound=1)
flags.DEFINE_integer("teacher_epochs", 4, "Epochs of the teacher trained when --teacher_run is not given.")
flags.DEFINE_list("stage_num_blocks", ["4", "3", "2"], "Encoder blocks per stage.")
flags.DEFINE_list("stage_ff_dims", ["384", "288", "192"], "Feed-forward width per stage.")
flags.DEFINE_list("stage_num_heads", ["4", "4", "2"], "Attention heads per stage.")
flags.DEFINE_list("stage_conv_dims", ["144", "144", "72"], "Convolution channels per stage.")
flags.DEFINE_list("stage_predictor_dims", ["256", "192", "128"], "Predictor width per stage.")
flags.DEFINE_list("stage_joiner_dims", ["320", "256", "160"], "Joiner width per stage.")
flags.DEFINE_list("stage_model_dims", [], "Optional model_dim per stage (a change means random init).")
flags.DEFINE_integer("epochs_per_stage", 2, "Epochs of each distillation stage.")
flags.DEFINE_bool("baselines", True, "Also run one-shot KD and from-scratch training of the final size.")
if "test_manifest" not in FLAGS:  # shared with the other recipe CLI / the benchmark
    flags.DEFINE_string("test_manifest", None, "Test JSONL manifest (default: <corpus_dir>/test.jsonl "
                        "when it exists).")


def stages_from_flags():
    from tf_todm.recipes.common import parse_int_list
    from tf_todm.recipes.progressive_kd import stages_from_lists
    names = ("stage_num_blocks", "stage_ff_dims", "stage_num_heads", "stage_conv_dims",
             "stage_predictor_dims", "stage_joiner_dims")
    lists = [parse_int_list(getattr(FLAGS, n), n) for n in names]
    model_dims = (parse_int_list(FLAGS.stage_model_dims, "stage_model_dims")
                  if FLAGS.stage_model_dims else None)
    return stages_from_lists(*lists, model_dims=model_dims)


def run() -> dict:
    from tf_todm.recipes import progressive_kd as pk
    from tf_todm.recipes.common import RecipeError, evaluate_model, load_transducer
    if not FLAGS.out_dir:
        raise RecipeError("--out_dir is required")
    if FLAGS.teacher_run and not os.path.exists(os.path.join(FLAGS.teacher_run, "config.json")):
        raise RecipeError(f"--teacher_run={FLAGS.teacher_run}: no config.json there; expected a trainer "
                          "run folder (config.json, ckpt/, tokenizer.model)")
    stages = stages_from_flags()
    model_config, train_config = ts.build_configs(False)
    train_config = train_config.replace(alpha_min=1.0, alpha_max=1.0)
    train_utts, dev_utts, test_utts, tokenizer, train_config = ts.prepare_data(
        train_config, FLAGS.teacher_run, FLAGS.test_manifest)
    data = (train_utts, dev_utts, tokenizer)
    if FLAGS.teacher_run:
        teacher = load_transducer(FLAGS.teacher_run, FLAGS.teacher_average_last)
    else:
        logging.info("no --teacher_run: training a teacher for %d epochs", FLAGS.teacher_epochs)
        teacher = pk.train_from_scratch(
            model_config.replace(vocab_size=tokenizer.vocab_size),
            train_config.replace(num_epochs=FLAGS.teacher_epochs), *data,
            os.path.join(FLAGS.out_dir, "teacher"))["model"]
    if teacher.config.vocab_size != tokenizer.vocab_size:
        raise RecipeError(f"teacher vocab_size={teacher.config.vocab_size} but the tokenizer "
                          f"{train_config.tokenizer_path} has {tokenizer.vocab_size} pieces")
    stage_config = train_config.replace(num_epochs=FLAGS.epochs_per_stage)

    def test(model):
        return evaluate_model("transducer", model, test_utts, tokenizer) if test_utts else {}

    result = {"teacher": {"params": int(teacher.count_params()), "test": test(teacher)},
              "stages": []}
    records = pk.run_progressive(teacher, stages, stage_config, *data, FLAGS.out_dir)
    for spec, rec in zip(stages, records):
        result["stages"].append({"spec": dataclasses.asdict(spec), "init": rec["init"],
                                 "params": rec["params"], "teacher_params": int(rec["teacher"].count_params()),
                                 "final_dev_wer": rec["summary"]["final_dev_wer"],
                                 "train_seconds": rec["summary"]["train_seconds"],
                                 "test": test(rec["model"])})
    if FLAGS.baselines:
        total = train_config.replace(num_epochs=FLAGS.epochs_per_stage * len(stages))
        one_shot = pk.run_stage(teacher, stages[-1], total, *data, os.path.join(FLAGS.out_dir, "one_shot"))
        scratch = pk.train_from_scratch(records[-1]["model"].config, total, *data,
                                        os.path.join(FLAGS.out_dir, "scratch"))
        for name, rec in (("one_shot", one_shot), ("scratch", scratch)):
            result[name] = {"params": rec["params"], "final_dev_wer": rec["summary"]["final_dev_wer"],
                            "train_seconds": rec["summary"]["train_seconds"], "test": test(rec["model"])}
    with open(os.path.join(FLAGS.out_dir, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def main(argv):
    del argv
    try:
        result = run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    teacher = result["teacher"]
    print(f"{'model':<12}{'params':>10}{'reduction':>11}{'test WER':>10}")
    rows = [("teacher", teacher)] + [(f"stage{k}", s) for k, s in enumerate(result["stages"], 1)]
    rows += [(n, result[n]) for n in ("one_shot", "scratch") if n in result]
    for name, r in rows:
        wer = r["test"].get("wer", float("nan"))
        print(f"{name:<12}{r['params']:>10}{1 - r['params'] / teacher['params']:>11.1%}{wer:>10.4f}")


if __name__ == "__main__":
    app.run(main)
