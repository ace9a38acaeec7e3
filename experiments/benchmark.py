"""The one comparison report: every training method of tf_todm, per model size, side by side.

    python -m experiments.benchmark --config=experiments/flags/bench.cfg [--out_dir=artifacts/bench]
    python -m experiments.benchmark --config=experiments/flags/bench_tiny.cfg --out_dir=/tmp/bench

`--config` is an absl flagfile. Methods (`--methods`, comma list), all on the same data:
  * supernet: ONE elastic supernet (sandwich rule + in-place KD, `tf_todm.training`) trained for
    `--supernet_epochs`; the teacher size (largest) and each `--stage_*` size are extracted
    (`extract_subnet`) and evaluated without fine-tuning. Its train time is the one shared run.
  * individual: each size trained alone from scratch (labels only) for `--epochs` epochs. The
    teacher-size model is the reference / first teacher of the two recipes below; the final-size
    row is the "from scratch" baseline of progressive KD.
  * progressive_kd: `tf_todm.recipes.progressive_kd`, one row per stage (`--epochs_per_stage`).
  * one_shot_kd: the teacher distilled straight to the final stage size
    (`--epochs_per_stage` x number of stages epochs).
  * repr_transfer: `tf_todm.recipes.repr_transfer`, one shallow CTC model per `--reductions`
    entry (`--stage1_epochs` + `--stage2_epochs`).
  * scratch_ctc: the same shallow CTC models trained from scratch with CTC for `--ctc_epochs`.

Per row: deployed parameters (transducer: encoder + predictor + joiner; CTC: encoder + CTC head;
training-only heads excluded), int8 bytes, test WER of the float Keras model (greedy), test WER with
the encoder (+ CTC head) converted to a dynamic-range int8 TFLite model run in LiteRT
(`tf_todm.export.convert`; `--tflite`), RTF (float: batched Keras; int8: LiteRT, 1 thread, each
utterance padded to the longest test utterance), training wall time (evaluations excluded) and
epochs. Transducer int8 WER uses the int8 TFLite ENCODER with the float Keras predictor/joiner
for greedy search; transducer int8 bytes = the encoder flatbuffer + 1 byte per predictor/joiner
weight (an estimate, marked in `int8_bytes_kind`).

Comparisons (report.md / report.json "comparisons"):
  * repr_transfer vs scratch_ctc: epochs (stage 1 + stage 2, and stage 2 only) and wall time for
    the transferred model to reach the scratch model's final dev WER (target >= 3x fewer), and the
    WER at equal epochs (target >= 10% relative better).
  * progressive_kd vs one_shot_kd vs individual (scratch) at the final size: parameter reduction
    vs the first teacher (target >= 60%) and relative test-WER degradation (target <= 5%).

Data: the default generated corpus (`--corpus_dir`, generated with `--corpus_hours` if missing).
Real corpora instead: `--librispeech_root=DIR` with `--librispeech_splits=train-clean-100,
dev-clean,test-clean` (subset folders in LibriSpeech layout, read by
`tf_todm.data.corpora.load_librispeech`), or `--tedlium_root=DIR` with `--tedlium_splits=train,dev,test`
(split folders with sph/ and stm/, `load_tedlium`; segment WAVs cached under `<out_dir>/tedlium`).

Writes `<out_dir>/report.json`, `<out_dir>/report.md`, `<out_dir>/wer_vs_params.png` and the
run folders of every training; prints the table. User errors print one line and exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

from absl import app, flags, logging

from experiments import train_supernet as ts
from experiments import train_progressive_kd as tpk
from experiments import train_repr_transfer as trt

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Benchmark flagfile (e.g. experiments/flags/bench.cfg).")
flags.DEFINE_list("methods", ["supernet", "individual", "progressive_kd", "one_shot_kd",
                              "repr_transfer", "scratch_ctc"], "Methods to run.")
flags.DEFINE_integer("epochs", 4, "Epochs of each individually trained transducer (and teacher).")
flags.DEFINE_integer("supernet_epochs", 4, "Epochs of the supernet.")
flags.DEFINE_integer("ctc_epochs", 8, "Epochs of the shallow CTC models trained from scratch.")
flags.DEFINE_list("reductions", ["0.667"], "Encoder-block reductions of the shallow CTC models.")
flags.DEFINE_bool("tflite", True, "Also evaluate int8 (dynamic-range) TFLite encoders in LiteRT.")
flags.DEFINE_integer("test_max_utterances", 400, "Test utterances per model (0 = all).")
# --teacher_run (defined by experiments.train_progressive_kd, same meaning): an already trained plain
# Transducer run folder used as the teacher / reference instead of training one; the model config
# and (unless --tokenizer) the tokenizer are the run's, its row reports the run's own training time.
# --teacher_average_last=N (same module) makes it the mean of the run's newest N checkpoints.
flags.DEFINE_string("librispeech_root", None, "LibriSpeech folder holding the split subsets.")
flags.DEFINE_list("librispeech_splits", ["train-clean-100", "dev-clean", "test-clean"],
                  "train,dev,test subset folder names under --librispeech_root.")
flags.DEFINE_string("tedlium_root", None, "TED-LIUM folder holding the split folders.")
flags.DEFINE_list("tedlium_splits", ["train", "dev", "test"],
                  "train,dev,test split folder names under --tedlium_root.")

REPORT_FIELDS = ("method", "size", "params", "int8_bytes", "int8_bytes_kind", "test_wer_float",
                 "test_wer_int8", "int8_note", "rtf_float", "rtf_int8", "train_seconds", "epochs")


class BenchmarkError(ValueError):
    """A user mistake in the benchmark flags (one line)."""


# --- data ----------------------------------------------------------------------------------
def load_data(out_dir: str):
    """(train, dev, test) utterance lists from the flags (see module docstring)."""
    from tf_todm.data import corpora
    from tf_todm.data.manifest import read_manifest
    if FLAGS.librispeech_root and FLAGS.tedlium_root:
        raise BenchmarkError("give at most one of --librispeech_root and --tedlium_root")
    if FLAGS.librispeech_root:
        if len(FLAGS.librispeech_splits) != 3:
            raise BenchmarkError("--librispeech_splits: expected train,dev,test folder names")
        return [corpora.load_librispeech(os.path.join(FLAGS.librispeech_root, s))
                for s in FLAGS.librispeech_splits]
    if FLAGS.tedlium_root:
        if len(FLAGS.tedlium_splits) != 3:
            raise BenchmarkError("--tedlium_splits: expected train,dev,test folder names")
        return [corpora.load_tedlium(os.path.join(FLAGS.tedlium_root, s),
                                     cache_dir=os.path.join(out_dir, "tedlium", s))
                for s in FLAGS.tedlium_splits]
    ts.prepare_corpus(FLAGS.corpus_dir, FLAGS.corpus_hours, FLAGS.corpus_seed, FLAGS.corpus_extra_train_voices)
    return [read_manifest(os.path.join(FLAGS.corpus_dir, f"{s}.jsonl"))
            for s in ("train", "dev", "test")]


# --- measurements --------------------------------------------------------------------------
def transducer_deploy_params(model) -> int:
    """Encoder + predictor + joiner (the simple heads and CTC head only serve training)."""
    return int(model.encoder.count_params() + model.predictor.count_params()
               + model.joiner.count_params())


def _encoder_signature(kind: str, model, frames: int):
    import tensorflow as tf
    dim = model.config.input_dim

    @tf.function
    def encode(features, feature_lengths):
        enc, lengths = model.encode(features, feature_lengths, training=False)
        if kind == "ctc":
            return {"logits": model.ctc_logits(enc), "lengths": lengths}
        return {"encoder": enc, "lengths": lengths}

    return encode.get_concrete_function(tf.TensorSpec([1, frames, dim], tf.float32, name="features"),
                                        tf.TensorSpec([1], tf.int32, name="feature_lengths"))


def tflite_int8_eval(kind: str, model, utterances, tokenizer) -> dict:
    """int8 (dynamic-range) TFLite encoder in LiteRT: {"wer", "rtf", "bytes"} (see docstring)."""
    import numpy as np
    import tensorflow as tf

    from tf_todm.decoding import ctc_greedy_decode, greedy_decode
    from tf_todm.export.convert import convert
    from tf_todm.export.runtime import LiteRTModel
    from tf_todm.metrics import wer
    from tf_todm.recipes.common import eval_dataset
    batches = list(eval_dataset(utterances, tokenizer, batch_size=1))
    frames = max(int(b["features"].shape[1]) for b in batches)
    lite = LiteRTModel(convert({"encode": _encoder_signature(kind, model, frames)}, "dynamic_int8"),
                       num_threads=1)
    refs, hyps, seconds, audio = [], [], 0.0, 0.0
    for b in batches:
        feats = b["features"].numpy()
        padded = np.zeros((1, frames, feats.shape[2]), np.float32)
        padded[:, :feats.shape[1]] = feats
        lengths = b["feature_lengths"].numpy().astype(np.int32)
        start = time.perf_counter()
        out = lite.run("encode", features=padded, feature_lengths=lengths)
        if kind == "ctc":
            ids = ctc_greedy_decode(out["logits"], out["lengths"])
        else:
            ids = greedy_decode(model, tf.constant(out["encoder"]), tf.constant(out["lengths"]))
        seconds += time.perf_counter() - start
        audio += float(lengths.sum()) * 0.01
        hyps += [tokenizer.decode(list(h)) for h in ids]
        refs += [t.decode() for t in b["text"].numpy()]
    return {"wer": float(wer(refs, hyps)), "rtf": seconds / max(audio, 1e-9),
            "bytes": len(lite.model_bytes)}


def measure_row(method: str, size: str, kind: str, model, test_utts, tokenizer,
                train_seconds: float, epochs, extra=None) -> dict:
    """One report row (every field of REPORT_FIELDS)."""
    from tf_todm.recipes.common import evaluate_model
    from tf_todm.recipes.repr_transfer import deploy_params
    params = deploy_params(model) if kind == "ctc" else transducer_deploy_params(model)
    flt = evaluate_model(kind, model, test_utts, tokenizer)
    row = {"method": method, "size": size, "kind": kind, "params": params,
           "test_wer_float": flt["wer"], "test_wer_float_by_domain": flt["wer_by_domain"],
           "rtf_float": flt["rtf"], "train_seconds": train_seconds,
           "epochs": epochs, "model_config": model.config.to_dict()}
    row.update({"int8_bytes": None, "int8_bytes_kind": None, "test_wer_int8": None,
                "rtf_int8": None, "int8_note": None})
    if FLAGS.tflite:
        try:
            q = tflite_int8_eval(kind, model, test_utts, tokenizer)
        except Exception as e:  # report float only, and say why
            row["int8_note"] = f"int8 TFLite failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            row["int8_bytes"] = params  # 1 byte per weight, estimate
            row["int8_bytes_kind"] = "estimate: 1 byte per parameter"
        else:
            row["test_wer_int8"], row["rtf_int8"] = q["wer"], q["rtf"]
            if kind == "ctc":
                row["int8_bytes"], row["int8_bytes_kind"] = q["bytes"], "measured TFLite flatbuffer"
                row["int8_note"] = "encoder + CTC head, dynamic-range int8, LiteRT"
            else:
                rest = int(model.predictor.count_params() + model.joiner.count_params())
                row["int8_bytes"] = q["bytes"] + rest
                row["int8_bytes_kind"] = "encoder flatbuffer measured + predictor/joiner 1 B/weight"
                row["int8_note"] = "int8 TFLite encoder + float Keras predictor/joiner greedy search"
    else:
        row["int8_note"] = "--tflite=false: float only"
        row["int8_bytes"], row["int8_bytes_kind"] = params, "estimate: 1 byte per parameter"
    row.update(extra or {})
    return row


# --- methods -------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
    """Everything a method needs; methods append rows and store models for later methods."""

    out_dir: str
    model_config: object
    train_config: object
    stages: list
    train: list
    dev: list
    test: list
    tokenizer: object
    rows: list = dataclasses.field(default_factory=list)
    models: dict = dataclasses.field(default_factory=dict)
    runs: dict = dataclasses.field(default_factory=dict)
    teacher_run_config: dict = dataclasses.field(default_factory=dict)  # --teacher_run's config.json

    @property
    def data(self):
        return self.train, self.dev, self.tokenizer

    def sizes(self):
        """[(name, StageSpec or None for the teacher size)]."""
        return [("teacher", None)] + [(f"stage{k}", s) for k, s in enumerate(self.stages, 1)]


def _stage_config(ctx: Context, spec):
    """TransducerConfig of a stage size (a slice of the teacher config when possible)."""
    from tf_todm.export.extract import subnet_model_config
    from tf_todm.recipes.progressive_kd import can_slice, student_from_teacher
    if spec is None:
        return ctx.model_config
    if can_slice(ctx.model_config, spec):
        return subnet_model_config(ctx.model_config, spec.subnet_config())
    from tf_todm.models.transducer import Transducer
    return student_from_teacher(Transducer(ctx.model_config), spec)[0].config


def load_teacher_run(ctx: Context) -> None:
    """Registers the --teacher_run model as the teacher and adds its report row."""
    from tf_todm.recipes.common import load_transducer
    model = load_transducer(FLAGS.teacher_run, FLAGS.teacher_average_last)
    with open(os.path.join(FLAGS.teacher_run, "train_summary.json")) as f:
        summary = json.load(f)
    steps_per_epoch = ctx.teacher_run_config.get("steps_per_epoch") or 0
    epochs = round(summary["step"] / steps_per_epoch, 2) if steps_per_epoch else summary.get("epoch")
    ctx.models[("individual", "teacher")] = model
    ctx.runs[("individual", "teacher")] = summary
    # `train_seconds` sums the run's training time over kills and resumes; run folders written before
    # it existed only have the last call's `elapsed_seconds`.
    seconds_field = "train_seconds" if "train_seconds" in summary else "elapsed_seconds"
    ctx.rows.append(measure_row("individual", "teacher", "transducer", model, ctx.test, ctx.tokenizer,
                                summary[seconds_field], epochs,
                                {"train_seconds_note": f"trained earlier: {FLAGS.teacher_run} "
                                                      f"(its train_summary.json {seconds_field})",
                                 "steps": summary["step"]}))


def method_individual(ctx: Context) -> None:
    from tf_todm.recipes.progressive_kd import train_from_scratch
    cfg = ctx.train_config.replace(num_epochs=FLAGS.epochs)
    for name, spec in ctx.sizes():
        if spec is None and FLAGS.teacher_run:
            teacher(ctx)
            continue
        rec = train_from_scratch(_stage_config(ctx, spec), cfg, *ctx.data,
                                 os.path.join(ctx.out_dir, "individual", name))
        ctx.models[("individual", name)] = rec["model"]
        ctx.runs[("individual", name)] = rec["summary"]
        ctx.rows.append(measure_row("individual", name, "transducer", rec["model"], ctx.test,
                                    ctx.tokenizer, rec["summary"]["train_seconds"], FLAGS.epochs))


def teacher(ctx: Context):
    """The teacher-size individual model (trained on demand, or loaded from --teacher_run)."""
    key = ("individual", "teacher")
    if key not in ctx.models and FLAGS.teacher_run:
        load_teacher_run(ctx)
    if key not in ctx.models:
        from tf_todm.recipes.progressive_kd import train_from_scratch
        rec = train_from_scratch(ctx.model_config, ctx.train_config.replace(num_epochs=FLAGS.epochs),
                                 *ctx.data, os.path.join(ctx.out_dir, "individual", "teacher"))
        ctx.models[key] = rec["model"]
        ctx.runs[key] = rec["summary"]
    return ctx.models[key]


def method_supernet(ctx: Context) -> None:
    """Trains the supernet with the project trainer and extracts every size."""
    from tf_todm.export.extract import extract_subnet
    from tf_todm.models.config import search_space
    from tf_todm.recipes.common import load_transducer
    from tf_todm.training.trainer import run_training
    out = os.path.join(ctx.out_dir, "supernet")
    cfg = ctx.train_config.replace(supernet=True, num_epochs=FLAGS.supernet_epochs,
                                   alpha_min=-1.0, alpha_max=1.0)
    start = time.perf_counter()
    summary = run_training(ctx.model_config, cfg, out, train_utterances=ctx.train,
                           dev_utterances=ctx.dev, tokenizer=ctx.tokenizer,
                           final_eval=False)
    seconds = time.perf_counter() - start
    supernet = load_transducer(out)
    space = search_space(ctx.model_config)
    for name, spec in ctx.sizes():
        subnet = space.largest() if spec is None else spec.subnet_config()
        model = extract_subnet(supernet, subnet)
        ctx.rows.append(measure_row("supernet", name, "transducer", model, ctx.test, ctx.tokenizer,
                                    seconds, FLAGS.supernet_epochs,
                                    {"train_seconds_note": "one shared supernet run for all sizes",
                                     "in_search_space": space.contains(subnet),
                                     "supernet_steps": summary.get("step")}))


def method_progressive_kd(ctx: Context) -> None:
    from tf_todm.recipes.progressive_kd import run_progressive
    cfg = ctx.train_config.replace(num_epochs=FLAGS.epochs_per_stage, alpha_min=1.0, alpha_max=1.0)
    records = run_progressive(teacher(ctx), ctx.stages, cfg, *ctx.data,
                              os.path.join(ctx.out_dir, "progressive_kd"))
    cumulative = 0.0
    for k, rec in enumerate(records, 1):
        cumulative += rec["summary"]["train_seconds"]
        ctx.models[("progressive_kd", f"stage{k}")] = rec["model"]
        ctx.rows.append(measure_row(
            "progressive_kd", f"stage{k}", "transducer", rec["model"], ctx.test, ctx.tokenizer,
            cumulative, FLAGS.epochs_per_stage * k,
            {"init": rec["init"], "teacher_params": transducer_deploy_params(rec["teacher"]),
             "train_seconds_note": "cumulative over stages 1..k (teacher training excluded)"}))


def method_one_shot_kd(ctx: Context) -> None:
    from tf_todm.recipes.progressive_kd import run_stage
    epochs = FLAGS.epochs_per_stage * len(ctx.stages)
    cfg = ctx.train_config.replace(num_epochs=epochs, alpha_min=1.0, alpha_max=1.0)
    rec = run_stage(teacher(ctx), ctx.stages[-1], cfg, *ctx.data,
                    os.path.join(ctx.out_dir, "one_shot_kd"))
    name = f"stage{len(ctx.stages)}"
    ctx.models[("one_shot_kd", name)] = rec["model"]
    ctx.rows.append(measure_row("one_shot_kd", name, "transducer", rec["model"], ctx.test,
                                ctx.tokenizer, rec["summary"]["train_seconds"], epochs,
                                {"init": rec["init"]}))


def _ctc_size(reduction: float) -> str:
    return f"ctc_r{reduction:g}"


def method_repr_transfer(ctx: Context) -> None:
    from tf_todm.recipes import repr_transfer as rt
    ref = teacher(ctx)
    loss = rt.ReprLossConfig(FLAGS.mse_weight, FLAGS.infonce_weight, FLAGS.temperature,
                             FLAGS.max_frames)
    for reduction in [float(r) for r in FLAGS.reductions]:
        student = rt.shallow_config(ref.config, reduction)
        out = rt.run_repr_transfer(
            ref, student, ctx.train_config.replace(num_epochs=FLAGS.stage1_epochs),
            ctx.train_config.replace(num_epochs=FLAGS.stage2_epochs), loss, *ctx.data,
            os.path.join(ctx.out_dir, "repr_transfer", _ctc_size(reduction)))
        name = _ctc_size(reduction)
        ctx.runs[("repr_transfer", name)] = out
        seconds = out["stage1"]["train_seconds"] + out["stage2"]["train_seconds"]
        ctx.rows.append(measure_row(
            "repr_transfer", name, "ctc", out["model"], ctx.test, ctx.tokenizer, seconds,
            FLAGS.stage1_epochs + FLAGS.stage2_epochs,
            {"reduction": reduction, "num_blocks": student.num_blocks,
             "stage1_seconds": out["stage1"]["train_seconds"],
             "stage2_history": out["stage2"]["history"],
             "train_seconds_note": "stage 1 + stage 2 (reference training excluded)"}))


def method_scratch_ctc(ctx: Context) -> None:
    from tf_todm.recipes import repr_transfer as rt
    from tf_todm.recipes.common import run_training
    for reduction in [float(r) for r in FLAGS.reductions]:
        config = rt.shallow_config(ctx.model_config, reduction)
        cfg = ctx.train_config.replace(num_epochs=FLAGS.ctc_epochs)
        task = rt.CtcTask(config, cfg, *ctx.data)
        name = _ctc_size(reduction)
        summary = run_training(task, cfg, os.path.join(ctx.out_dir, "scratch_ctc", name),
                               {"model": config.to_dict()})
        ctx.runs[("scratch_ctc", name)] = summary
        ctx.rows.append(measure_row("scratch_ctc", name, "ctc", task.model, ctx.test, ctx.tokenizer,
                                    summary["train_seconds"], FLAGS.ctc_epochs,
                                    {"reduction": reduction, "num_blocks": config.num_blocks,
                                     "history": summary["history"]}))


METHODS = {"individual": method_individual, "supernet": method_supernet,
           "progressive_kd": method_progressive_kd, "one_shot_kd": method_one_shot_kd,
           "repr_transfer": method_repr_transfer, "scratch_ctc": method_scratch_ctc}


# --- comparisons ---------------------------------------------------------------------------
def epochs_to_reach(history, target: float):
    """First (epoch, train_seconds) whose dev WER <= target, or (None, None)."""
    for h in history:
        if h["dev_wer"] <= target + 1e-12:
            return h["epoch"], h["train_seconds"]
    return None, None


def _wer_at(history, epoch: float):
    best = [h for h in history if abs(h["epoch"] - epoch) < 1e-6]
    return best[0]["dev_wer"] if best else None


def _rel(better, worse):
    if better is None or worse is None or not worse:
        return None
    return (worse - better) / worse


def compare_repr_transfer(rows: list, stage1_epochs: int, stage2_epochs: int) -> list:
    """Per reduction: repr_transfer row vs the scratch_ctc row of the same size."""
    out = []
    for r in [r for r in rows if r["method"] == "repr_transfer"]:
        s = next((x for x in rows if x["method"] == "scratch_ctc" and x["size"] == r["size"]), None)
        if s is None:
            continue
        target = s["history"][-1]["dev_wer"] if s["history"] else None
        e2, t2 = epochs_to_reach(r["stage2_history"], target) if target is not None else (None, None)
        scratch_epochs = s["history"][-1]["epoch"] if s["history"] else None
        total = None if e2 is None else stage1_epochs + e2
        k = stage2_epochs
        wer_rt_k, wer_sc_k = _wer_at(r["stage2_history"], k), _wer_at(s["history"], k)
        tot_k = stage1_epochs + k
        wer_sc_tot = _wer_at(s["history"], tot_k)
        out.append({
            "size": r["size"], "params": r["params"], "scratch_final_dev_wer": target,
            "scratch_epochs": scratch_epochs, "scratch_train_seconds": s["train_seconds"],
            "repr_stage2_epochs_to_reach": e2, "repr_total_epochs_to_reach": total,
            "speedup_epochs_total": None if not total else scratch_epochs / total,
            "speedup_epochs_stage2": None if not e2 else scratch_epochs / e2,
            "speedup_wall_time": (None if t2 is None else
                                  s["train_seconds"] / (r["stage1_seconds"] + t2)),
            "dev_wer_at_equal_ctc_epochs": {"epochs": k, "repr_transfer": wer_rt_k, "scratch": wer_sc_k,
                                            "relative_improvement": _rel(wer_rt_k, wer_sc_k)},
            "dev_wer_at_equal_total_epochs": {"epochs": tot_k, "repr_transfer": wer_rt_k,
                                              "scratch": wer_sc_tot,
                                              "relative_improvement": _rel(wer_rt_k, wer_sc_tot)},
            "test_wer": {"repr_transfer": r["test_wer_float"], "scratch": s["test_wer_float"],
                         "relative_improvement": _rel(r["test_wer_float"], s["test_wer_float"])},
            "target_speedup_3x_met": bool(total and scratch_epochs / total >= 3.0),
            "target_wer_10pct_met": bool((_rel(wer_rt_k, wer_sc_k) or 0) >= 0.10),
        })
        if target is None or target >= 1.0:  # the baseline never learnt: targets say nothing
            out[-1]["target_speedup_3x_met"] = out[-1]["target_wer_10pct_met"] = None
            out[-1]["note"] = "scratch dev WER >= 1 (no learning at this scale): targets not assessed"
    return out


def compare_kd(rows: list, num_stages: int) -> dict:
    """Final-size rows vs the teacher-size individual row (param reduction, WER degradation)."""
    final = f"stage{num_stages}"
    get = {(r["method"], r["size"]): r for r in rows}
    t = get.get(("individual", "teacher"))
    if t is None:
        return {}
    result = {"teacher_params": t["params"], "teacher_test_wer": t["test_wer_float"], "final_size": final}
    for method in ("progressive_kd", "one_shot_kd", "individual", "supernet"):
        r = get.get((method, final))
        if r is None:
            continue
        reduction = 1 - r["params"] / t["params"]
        degradation = ((r["test_wer_float"] - t["test_wer_float"]) / t["test_wer_float"]
                       if t["test_wer_float"] else None)
        result[method] = {"params": r["params"], "param_reduction": reduction,
                          "test_wer": r["test_wer_float"], "relative_wer_degradation": degradation,
                          "target_met": bool(reduction >= 0.6 and degradation is not None
                                             and degradation <= 0.05)}
        if t["test_wer_float"] >= 1.0:  # the teacher never learnt: the target says nothing
            result[method]["target_met"] = None
            result["note"] = "teacher test WER >= 1 (no learning at this scale): targets not assessed"
    return result


# --- report --------------------------------------------------------------------------------
def _fmt(v, spec=".4f"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def write_plot(rows: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["params"], r["test_wer_float"]) for r in rows if r["method"] == method)
        ax.plot([p for p, _ in pts], [w for _, w in pts], marker="o", label=method)
    ax.set_xlabel("deployed parameters")
    ax.set_ylabel("test WER (float)")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, out_dir: str) -> None:
    from tf_todm.training.checkpoints import write_json_atomic
    write_json_atomic(os.path.join(out_dir, "report.json"), report)
    lines = ["# tf_todm benchmark", "", f"Command: `{report['command']}`", "",
             f"Data: {report['data']}", "",
             "| method | size | params | int8 bytes | test WER float | test WER int8 | RTF float | "
             "RTF int8 | train s | epochs |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['method']} | {r['size']} | {r['params']} | {_fmt(r['int8_bytes'])} | "
                     f"{_fmt(r['test_wer_float'])} | {_fmt(r['test_wer_int8'])} | "
                     f"{_fmt(r['rtf_float'])} | {_fmt(r['rtf_int8'])} | "
                     f"{_fmt(r['train_seconds'], '.1f')} | {r['epochs']} |")
    notes = sorted({r["int8_note"] for r in report["rows"] if r.get("int8_note")})
    lines += ["", "int8 notes: " + "; ".join(notes), "",
              "## Representation transfer vs CTC from scratch", "",
              "```json", json.dumps(report["comparisons"]["repr_transfer"], indent=1), "```", "",
              "## Progressive KD vs one-shot KD vs scratch (final size)", "",
              "```json", json.dumps(report["comparisons"]["kd"], indent=1), "```", "",
              "![WER vs params](wer_vs_params.png)", ""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))


def run() -> dict:
    out_dir = FLAGS.out_dir or "artifacts/bench"
    unknown = sorted(set(FLAGS.methods) - set(METHODS))
    if unknown:
        raise BenchmarkError(f"--methods: unknown {unknown}; expected a subset of {sorted(METHODS)}")
    os.makedirs(out_dir, exist_ok=True)
    stages = tpk.stages_from_flags()
    model_config, train_config = ts.build_configs(False)
    train, dev, test = load_data(out_dir)
    if FLAGS.test_max_utterances:
        test = test[:FLAGS.test_max_utterances]
    default_tokenizer = os.path.join(FLAGS.teacher_run or out_dir, "tokenizer.model")
    tokenizer = ts.prepare_tokenizer(FLAGS.tokenizer or default_tokenizer,
                                     [u.text for u in train], FLAGS.vocab_size)
    teacher_run_config = {}
    if FLAGS.teacher_run:  # the students derive from the teacher's architecture
        from tf_todm.models.config import TransducerConfig
        try:
            with open(os.path.join(FLAGS.teacher_run, "config.json")) as f:
                teacher_run_config = json.load(f)
            model_config = TransducerConfig.from_dict(teacher_run_config["model"])
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise BenchmarkError(f"--teacher_run={FLAGS.teacher_run}: no readable config.json with a "
                                 f"'model' entry ({type(e).__name__}: {e})") from None
        if model_config.vocab_size != tokenizer.vocab_size:
            raise BenchmarkError(f"--teacher_run={FLAGS.teacher_run}: its vocab_size {model_config.vocab_size} "
                                 f"!= the tokenizer's {tokenizer.vocab_size} (--tokenizer)")
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    ctx = Context(out_dir, model_config, train_config, stages, train, dev, test, tokenizer,
                  teacher_run_config=teacher_run_config)
    timings = {}
    order = [m for m in METHODS if m in FLAGS.methods]
    for method in order:
        start = time.perf_counter()
        logging.info("benchmark: method %s", method)
        METHODS[method](ctx)
        timings[method] = time.perf_counter() - start
    hours = lambda utts: sum(u.duration for u in utts) / 3600.0  # noqa: E731
    report = {
        "command": " ".join(["python -m experiments.benchmark"] + sys.argv[1:]),
        "data": {"source": ("librispeech" if FLAGS.librispeech_root else
                            "tedlium" if FLAGS.tedlium_root else "default corpus " + FLAGS.corpus_dir),
                 "train_hours": hours(train), "dev_hours": hours(dev), "test_hours": hours(test),
                 "test_utterances": len(test)},
        "fields": list(REPORT_FIELDS),
        "model_config": model_config.to_dict(), "train_config": train_config.to_dict(),
        "stages": [dataclasses.asdict(s) for s in stages],
        "rows": ctx.rows, "method_wall_seconds": timings,
        "comparisons": {"repr_transfer": compare_repr_transfer(ctx.rows, FLAGS.stage1_epochs,
                                                                   FLAGS.stage2_epochs),
                        "kd": compare_kd(ctx.rows, len(stages))},
    }
    if ctx.rows:
        write_plot(ctx.rows, os.path.join(out_dir, "wer_vs_params.png"))
    write_report(report, out_dir)
    return report


def main(argv):
    del argv
    try:
        report = run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{'method':<16}{'size':<12}{'params':>9}{'int8 B':>9}{'WER':>8}{'WER8':>8}{'RTF':>8}"
          f"{'train s':>9}")
    for r in report["rows"]:
        print(f"{r['method']:<16}{r['size']:<12}{r['params']:>9}{_fmt(r['int8_bytes']):>9}"
              f"{_fmt(r['test_wer_float']):>8}{_fmt(r['test_wer_int8']):>8}"
              f"{_fmt(r['rtf_float']):>8}{_fmt(r['train_seconds'], '.1f'):>9}")
    print(json.dumps(report["comparisons"], indent=1))


def _config_to_flagfile(argv):
    """`--config=X` also means `--flagfile=X` (so the config's flags are parsed)."""
    extra = []
    for a in argv[1:]:
        if a.startswith("--config="):
            extra.append("--flagfile=" + a.split("=", 1)[1])
    return argv[:1] + extra + argv[1:]


if __name__ == "__main__":
    app.run(main, argv=_config_to_flagfile(sys.argv))
