"""Two-stage representation transfer to a light-weight CTC model (tf_todm.recipes.repr_transfer).

    python -m experiments.train_repr_transfer --flagfile=experiments/flags/repr_transfer_small.cfg \
        --out_dir=artifacts/repr_transfer_small [--reference_run=artifacts/single_small]

Stage 1 freezes the reference encoder and trains a shallow encoder (`--reduction` of its blocks
removed) + a linear projection with `--mse_weight` x MSE + `--infonce_weight` x InfoNCE; stage 2
attaches a linear CTC head and fine-tunes with CTC. The reference is the Transducer of a trainer
run folder (`--reference_run`: config.json + ckpt/, e.g. from experiments.train_single); with
`--reference_subnet` (SubnetConfig JSON, a file holding it, or "largest") it is a supernet run and
that subnet is extracted (`tf_todm.export.extract.extract_subnet`). Without `--reference_run` a
reference is first trained from the `--model` config for `--reference_epochs` epochs in
`<out_dir>/reference`. `--model` overrides apply to the STUDENT on top of the derived shallow
config; `--train` overrides apply to both stages; `--stage1_epochs` / `--stage2_epochs` set the
epochs. Writes `<out_dir>/stage1`, `<out_dir>/stage2` (trainer run folders) and
`<out_dir>/result.json` (params, dev history, test WER). User errors print one line, exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app, flags, logging

from experiments import train_supernet as ts

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_run", None, "Trainer run folder of the reference Transducer.")
flags.DEFINE_string("reference_subnet", None, "With a supernet reference run: SubnetConfig JSON, "
                    "a file holding it, or 'largest'.")
flags.DEFINE_integer("reference_epochs", 4, "Epochs of the reference trained when --reference_run "
                     "is not given.")
flags.DEFINE_float("reduction", 0.667, "Fraction of the reference's encoder blocks removed "
                   "(e.g. 0.5, 0.667, 0.833).")
flags.DEFINE_float("mse_weight", 1.0, "Stage-1 weight of the frame MSE.")
flags.DEFINE_float("infonce_weight", 1.0, "Stage-1 weight of the CLIP-style frame InfoNCE.")
flags.DEFINE_float("temperature", 0.1, "InfoNCE temperature.")
flags.DEFINE_integer("max_frames", 512, "InfoNCE: frames sampled per batch (N x N similarities).")
flags.DEFINE_integer("stage1_epochs", 4, "Epochs of stage 1 (representation matching).")
flags.DEFINE_integer("stage2_epochs", 4, "Epochs of stage 2 (CTC fine-tuning).")
if "test_manifest" not in FLAGS:  # shared with the other recipe CLI / the benchmark
    flags.DEFINE_string("test_manifest", None, "Test JSONL manifest (default: <corpus_dir>/test.jsonl "
                        "when it exists).")


def load_reference(run_dir: str, subnet_text):
    from tf_todm.recipes.common import RecipeError, load_transducer
    model = load_transducer(run_dir)
    if not subnet_text:
        return model
    from tf_todm.export.extract import extract_subnet
    from tf_todm.models.config import search_space
    from tf_todm.models.elastic_space import SubnetConfig
    if subnet_text == "largest":
        subnet = search_space(model.config).largest()
    else:
        if os.path.exists(subnet_text):
            with open(subnet_text) as f:
                subnet_text = f.read()
        try:
            subnet = SubnetConfig.from_json(subnet_text)
        except json.JSONDecodeError as e:
            raise RecipeError(f"--reference_subnet: not JSON ({e})") from None
    return extract_subnet(model, subnet)


def run() -> dict:
    from tf_todm.recipes import repr_transfer as rt
    from tf_todm.recipes.common import RecipeError, evaluate_model
    from tf_todm.training.config import parse_overrides
    if not FLAGS.out_dir:
        raise RecipeError("--out_dir is required")
    if FLAGS.reference_run and not os.path.exists(os.path.join(FLAGS.reference_run, "config.json")):
        raise RecipeError(f"--reference_run={FLAGS.reference_run}: no config.json there; expected a trainer "
                          "run folder (config.json, ckpt/, tokenizer.model)")
    model_config, train_config = ts.build_configs(False)
    train_utts, dev_utts, test_utts, tokenizer, train_config = ts.prepare_data(
        train_config, FLAGS.reference_run, FLAGS.test_manifest)
    if FLAGS.reference_run:
        reference = load_reference(FLAGS.reference_run, FLAGS.reference_subnet)
    else:
        from tf_todm.recipes.progressive_kd import train_from_scratch
        ref_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        logging.info("no --reference_run: training a reference for %d epochs", FLAGS.reference_epochs)
        reference = train_from_scratch(ref_config, train_config.replace(num_epochs=FLAGS.reference_epochs),
                                       train_utts, dev_utts, tokenizer,
                                       os.path.join(FLAGS.out_dir, "reference"))["model"]
    if reference.config.vocab_size != tokenizer.vocab_size:
        raise RecipeError(f"reference vocab_size={reference.config.vocab_size} but the tokenizer "
                          f"{train_config.tokenizer_path} has {tokenizer.vocab_size} pieces")
    student = rt.shallow_config(reference.config, FLAGS.reduction)
    if FLAGS.reference_run:  # --model overrides shape the student
        student = parse_overrides(student, FLAGS.model)
    loss_config = rt.ReprLossConfig(FLAGS.mse_weight, FLAGS.infonce_weight, FLAGS.temperature,
                                    FLAGS.max_frames)
    out = rt.run_repr_transfer(
        reference, student, train_config.replace(num_epochs=FLAGS.stage1_epochs),
        train_config.replace(num_epochs=FLAGS.stage2_epochs), loss_config, train_utts, dev_utts,
        tokenizer, FLAGS.out_dir)
    result = {
        "reference_params": int(reference.count_params()),
        "reference_blocks": reference.config.num_blocks,
        "student": student.to_dict(), "student_params": rt.deploy_params(out["model"]),
        "reduction": FLAGS.reduction, "repr_loss": dataclasses.asdict(loss_config),
        "stage1": {k: out["stage1"][k] for k in ("last_scalars", "train_seconds", "step")},
        "stage2": {k: out["stage2"][k] for k in ("history", "train_seconds", "final_dev_wer", "step")},
    }
    if test_utts:
        result["test"] = evaluate_model("ctc", out["model"], test_utts, tokenizer)
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
    print(json.dumps({k: result[k] for k in ("reference_params", "student_params", "stage2")
                      if k in result}, indent=1, default=str))
    if "test" in result:
        print(f"test WER {result['test']['wer']:.4f}  RTF {result['test']['rtf']:.4f}")


if __name__ == "__main__":
    app.run(main)
