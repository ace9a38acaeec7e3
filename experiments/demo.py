"""The main job: train once, deploy many, on the built-in default corpus.

    python -m experiments.demo --out_dir=artifacts/demo --flagfile=experiments/flags/demo.cfg

Stages (each resumable: a finished stage's outputs are reused when the command is run again):
  1. corpus      default TTS corpus (train/dev/test disjoint in voices and sentences)
  2. tokenizer   SentencePiece on the training transcripts
  3. supernet    elastic Conformer-Transducer, sandwich rule + in-place alpha-divergence KD
  4. search      per device budget (dev WER; params / int8 bytes / latency, latency from LiteRT
                 measurements of extracted subnets, fitted for the search); the search settings
                 (predictor-guided by default, see demo.cfg) reuse experiments.search's flags
  5. export      each chosen subnet extracted and converted to streaming builtin-op .tflite bundles;
                 phone bundles also ship a token n-gram LM fitted on the corpus's training
                 text (`--lm_text`; `--lm_weight`, 0 = none)
  6. evaluate    each bundle streamed chunk by chunk in LiteRT on the test split (WER per domain,
                 RTF on 1 thread, per-chunk latency, size, peak memory), greedy; phone models
                 again with beam search and the shipped LM (rows `<model>+lm`)
Writes `<out_dir>/report.json`, `<out_dir>/pareto.png` (search) and `<out_dir>/deploy.png`, and
prints the table. Search settings reuse experiments.search's flags (--budgets, --population, ...).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

from experiments import search as search_cli  # noqa: F401  (defines the search flags we reuse)

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "artifacts/demo", "Output folder of the whole job.")
flags.DEFINE_string("corpus_dir", None, "Default corpus folder (default: <out_dir>/corpus).")
flags.DEFINE_float("corpus_hours", 1.0, "Hours of default-corpus audio to generate.")
flags.DEFINE_integer("corpus_seed", 0, "Seed of the default corpus.")
flags.DEFINE_integer("vocab_size", 256, "SentencePiece vocabulary size (blank included).")
flags.DEFINE_multi_string("model", [], "TransducerConfig override key=value (repeatable).")
flags.DEFINE_multi_string("train", [], "TrainConfig override key=value (repeatable).")
flags.DEFINE_float("supernet_minutes", 25.0, "Wall-clock limit of supernet training.")
flags.DEFINE_bool("supernet_dev_eval", True, "Decode the dev set with the largest and smallest "
                  "subnets after training (reported under supernet.dev).")
flags.DEFINE_integer("latency_samples", 8, "Subnets whose LiteRT latency is measured to fit the "
                     "latency model used during the search (0: no latency).")
flags.DEFINE_list("phone_modes", ["float32", "dynamic_int8", "full_int8"],
                  "Quantization modes exported for phone budgets.")
flags.DEFINE_float("int16x8_when_int8_ratio", 1.05,
                   "Phone budgets: also export and evaluate int16x8 (int16 activations, int8 weights) "
                   "when the full-int8 test WER exceeds this multiple of the float32 WER (0: never).")
flags.DEFINE_float("lm_weight", 0.7, "Each phone bundle ships a token n-gram LM fitted on --lm_text "
                   "with this shallow-fusion weight, and is also evaluated with beam search + "
                   "that LM (0 = no LM). Default: the weight chosen on dev for issue 3's model.")
flags.DEFINE_enum("lm_text", "corpus", ["corpus", "transcripts"],
                  "What the shipped LM is fitted on: `corpus`, the corpus's train text (the training "
                  "transcripts plus the train-split sentences never spoken, tf_todm.data.corpus_text), or "
                  "`transcripts` only. Dev WER, corpus vs transcripts: 33.4% vs 35.9% on issue 3's model, "
                  "74.5% vs 74.7% on the demo's phone_high bundle (WORKSPACE).")
flags.DEFINE_float("lm_length_bonus", 1.5, "Per-token bonus recorded with the shipped LM. Default: the "
                   "bonus the demo's dev chose for either LM (issue 3's model chose 1.0).")
flags.DEFINE_integer("lm_order", 6, "Order of the shipped token LM.")
flags.DEFINE_integer("lm_beam_size", 4, "Beam width recorded with the shipped LM and used to evaluate it.")
flags.DEFINE_integer("max_test_utterances", 0, "Evaluate on the first N test utterances (0 = all).")
flags.DEFINE_integer("calibration_utterances", 32, "Training utterances (random, seeded) streamed "
                     "for the int8 / int16x8 representative dataset of each bundle.", lower_bound=1)
flags.DEFINE_integer("bn_calibration_batches", 8, "Training batches (--batch_size) from which each "
                     "searched / extracted subnet's conv-module BatchNorm statistics are re-estimated.",
                     lower_bound=1)


def stage(name: str):
    logging.info("=== stage: %s", name)
    print(f"\n=== {name} ===", flush=True)


def train_supernet(run_dir: str, train_utts, dev_utts, tokenizer) -> tuple[dict, bool]:
    """Trains the supernet into `run_dir`, or reuses the one an earlier run finished there.
    Returns (training summary, reused)."""
    from tf_todm.models.config import TransducerConfig
    from tf_todm.training.config import TrainConfig, parse_overrides
    from tf_todm.training.trainer import run_training
    model_config = parse_overrides(TransducerConfig(), FLAGS.model).replace(vocab_size=tokenizer.vocab_size)
    train_config = parse_overrides(TrainConfig(supernet=True), FLAGS.train).replace(
        max_train_minutes=FLAGS.supernet_minutes)
    summary_path = os.path.join(run_dir, "train_summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            print(f"supernet already trained: {summary_path} (delete {run_dir} to retrain)")
            return json.load(f), True
    return run_training(model_config, train_config, run_dir, train_utterances=train_utts,
                        dev_utterances=dev_utts, tokenizer=tokenizer,
                        final_eval=FLAGS.supernet_dev_eval), False


def run_search(model, tokenizer, dev_utts, out_dir: str, calibration=None):
    from tf_todm.data.pipeline import make_dataset
    from tf_todm.models.config import search_space
    from tf_todm.search.budgets import load_budgets
    from tf_todm.search.cost_model import AnalyticCostModel, FittedLatencyModel, MeasuredLatency
    from tf_todm.search.evaluator import SupernetWerEvaluator
    from tf_todm.search.latency import tflite_encoder_latency_fn
    import numpy as np

    config = model.config
    space = search_space(config)
    budgets = load_budgets(FLAGS.budgets)
    utts = dev_utts[: FLAGS.max_dev_utterances] if FLAGS.max_dev_utterances else dev_utts
    dataset = make_dataset(utts, tokenizer, batch_size=FLAGS.batch_size, training=False, seed=FLAGS.seed)
    evaluator = SupernetWerEvaluator(model, dataset, tokenizer, calibration_dataset=calibration)
    screen = search_cli.screening_evaluator(evaluator, FLAGS.screen_dev_batches,
                                            FLAGS.screen_calibration_batches)
    latency, fit = None, None
    if FLAGS.latency_samples > 0:
        measured = MeasuredLatency(os.path.join(out_dir, "latency_cache.json"),
                                   measure_fn=tflite_encoder_latency_fn(model, mode="dynamic_int8"))
        rng = np.random.default_rng(FLAGS.seed)
        samples = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(FLAGS.latency_samples - 2)]
        for subnet in samples:
            measured(subnet)
        fit = FittedLatencyModel.fit_measured(measured, AnalyticCostModel(config))
        latency = fit
    costs_fn = AnalyticCostModel(config, latency=latency)
    start = time.perf_counter()
    predictor = search_cli.predictor_settings()
    results, cache = search_cli.search_budgets(space, evaluator, costs_fn, budgets, seed=FLAGS.seed,
                                               max_evaluations=FLAGS.max_evaluations,
                                               screen_evaluator=screen, finalists=FLAGS.finalists,
                                               predictor=predictor, **search_cli.search_kwargs())
    settings = {"seed": FLAGS.seed, **({} if predictor else search_cli.search_kwargs()),
                **search_cli.screening_settings(), "predictor": predictor,
                "space": space.to_dict(),
                "max_dev_utterances": FLAGS.max_dev_utterances, "total_evaluations": len(cache),
                "latency_fit": None if fit is None else fit.to_dict(),
                "wall_time_s": time.perf_counter() - start}
    search_cli.report(results, settings, out_dir)
    print(search_cli.format_table(results))
    return results


def lm_training_text(corpus_dir: str, train_utts) -> tuple[list[str], dict]:
    """(sentences, info) the shipped LM is fitted on, as `--lm_text` asks; `info` goes to the report.
    A corpus that cannot give its train text (not made by the default generator, or changed since)
    raises `CorpusTextError` naming the file, with the flag that avoids it."""
    if FLAGS.lm_text == "transcripts":
        sentences = [u.text for u in train_utts]
        return sentences, {"fitted_on": "training transcripts", "sentences": len(sentences)}
    from tf_todm.data.corpus_text import CorpusTextError, corpus_train_text
    try:
        sentences, stats = corpus_train_text(corpus_dir)
    except CorpusTextError as e:
        raise CorpusTextError(f"{e} (--lm_text=transcripts fits the LM on the training transcripts "
                              f"instead)") from e
    return sentences, {"fitted_on": "corpus train text", "sentences": len(sentences),
                       "domains": {d: {k: v for k, v in c.items() if k != "dropped_examples"}
                                   for d, c in stats["domains"].items()}}


def export_and_evaluate(model, results, tokenizer_path, train_utts, test_utts, out_dir: str,
                        calibration=None, lm_text=None) -> list:
    import numpy as np
    from tf_todm.data.audio import load_audio
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.decoding.token_ngram import fit_token_lm
    from tf_todm.export.bundle import add_token_lm, export_bundle, representative_data
    from tf_todm.export.evaluate import needs_int16x8
    from tf_todm.export.extract import extract_subnet

    rng = np.random.default_rng(0)
    calib = [load_audio(train_utts[i].audio_filepath)
             for i in rng.choice(len(train_utts), size=min(FLAGS.calibration_utterances, len(train_utts)),
                                 replace=False)]
    test = test_utts[: FLAGS.max_test_utterances] if FLAGS.max_test_utterances else test_utts
    lm = None
    if FLAGS.lm_weight > 0:  # train-split text only, never dev or test
        lm = fit_token_lm(lm_text, Tokenizer(tokenizer_path), FLAGS.lm_order)
    rows = []
    for result in results:
        name = result.budget.name
        target = "mcu" if name.startswith("mcu") else "phone"
        modes = ("full_int8",) if target == "mcu" else tuple(FLAGS.phone_modes)
        subnet = result.best.config
        extracted = extract_subnet(model, subnet, calibration_batches=calibration)
        bundle_dir = os.path.join(out_dir, "bundles", name)
        representative = representative_data(extracted, calib)  # streamed once, reused by int16x8
        sidecars = export_bundle(extracted, tokenizer_path, bundle_dir, name, modes=modes,
                                 representative=representative, target=target, subnet_config=subnet)
        budget_rows = _evaluate_bundle(sidecars, bundle_dir, extracted, result, target, test, out_dir)
        wers = {r["quantization"]: r["wer"] for r in budget_rows}
        if target == "phone" and needs_int16x8(wers, FLAGS.int16x8_when_int8_ratio):
            print(f"  {name}: full-int8 WER {100 * wers['full_int8']:.2f}% > "
                  f"{FLAGS.int16x8_when_int8_ratio} x float32 {100 * wers['float32']:.2f}%: adding int16x8",
                  flush=True)
            more = export_bundle(extracted, tokenizer_path, bundle_dir, name, modes=("int16x8",),
                                 representative=representative, target=target, subnet_config=subnet)
            budget_rows += _evaluate_bundle(more, bundle_dir, extracted, result, target, test, out_dir)
            sidecars = sidecars + more
        if target == "phone" and lm is not None:
            add_token_lm(bundle_dir, name, lm, FLAGS.lm_weight, FLAGS.lm_length_bonus, FLAGS.lm_beam_size)
            budget_rows += _evaluate_bundle(sidecars, bundle_dir, extracted, result, target, test, out_dir,
                                            with_lm=True)
        rows += budget_rows
    return rows


def _evaluate_bundle(sidecars, bundle_dir, extracted, result, target, test, out_dir, with_lm: bool = False) -> list:
    """On-device evaluation (LiteRT, streaming) of each exported mode: one report row per model;
    greedy, or (`with_lm`) beam search with the LM the bundle ships (rows named `<model>+lm`,
    memory not measured, sidecar metrics left at the greedy numbers)."""
    from tf_todm.export import op_report
    from tf_todm.export.evaluate import bundle_lm_spec, evaluate_tflite_fresh_process
    name, subnet = result.budget.name, result.best.config
    rows = []
    for side in sidecars:
        tflite_path = os.path.join(bundle_dir, side["model_file"])
        # a new Python per model, as `experiments.evaluate_tflite` and an app run it: timings taken in
        # this process (TF thread pools, everything trained and converted so far) were ~1.5x the
        # standalone CLI's in the previous demo
        decoding = "greedy"
        if with_lm:
            spec, beam = bundle_lm_spec(tflite_path)
            decoding = f"beam{beam}+lm"
            metrics = evaluate_tflite_fresh_process(tflite_path, test, measure_memory=False, update_sidecar=False,
                                                    beam_size=beam, lm=spec)
        else:
            metrics = evaluate_tflite_fresh_process(tflite_path, test)
        with open(tflite_path, "rb") as f:
            breakdown = op_report.size_breakdown(f.read())
        mcu = side.get("mcu") or {}
        rows.append({
            "name": f"{name}.{side['quantization']}" + ("+lm" if with_lm else ""), "budget": name,
            "decoding": decoding,
            "tflite": os.path.relpath(tflite_path, out_dir),
            "sidecar": os.path.relpath(tflite_path[: -len(".tflite")] + ".json", out_dir),
            "target": target, "quantization": side["quantization"],
            "params": int(extracted.count_params()),
            "size_bytes": int(metrics["model_bytes"]), "frontend_bytes": int(metrics["frontend_bytes"]),
            "size_breakdown": breakdown,
            "wer": metrics["wer"], "cer": metrics["cer"], "wer_per_domain": metrics["wer_by_domain"],
            "rtf": metrics["rtf"], "latency_ms_median": metrics["latency_ms_median"],
            "latency_ms_p90": metrics["latency_ms_p90"], "chunk_ms": metrics["chunk_ms"],
            "peak_memory_bytes": metrics.get("peak_memory_bytes"),
            "mcu": {sig: {k: v for k, v in info.items() if k != "sample"} for sig, info in mcu.items()},
            "search_dev_wer": result.best.wer, "subnet": subnet.to_dict(),
        })
        print(f"  {rows[-1]['name']:<28} WER {100 * metrics['wer']:6.2f}%  RTF {metrics['rtf']:.4f}",
              flush=True)
    return rows


def format_table(rows) -> str:
    lines = [f"{'model':<28} {'target':<6} {'params':>9} {'KiB':>8} {'WER %':>7} {'cmd %':>7} "
             f"{'open %':>7} {'RTF':>7} {'p50 ms':>7} {'p90 ms':>7}"]
    for r in rows:
        dom = r.get("wer_per_domain") or {}
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        lines.append(f"{r['name']:<28} {r['target']:<6} {r['params']:>9d} {r['size_bytes'] / 1024:>8.1f} "
                     f"{pct(r['wer']):>7} {pct(dom.get('command')):>7} {pct(dom.get('open')):>7} "
                     f"{r['rtf']:>7.4f} {r['latency_ms_median']:>7.2f} {r['latency_ms_p90']:>7.2f}")
    return "\n".join(lines)


def plot_deploy(rows, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for quant, decoding in sorted({(r["quantization"], r.get("decoding", "greedy")) for r in rows}):
        sel = [r for r in rows if (r["quantization"], r.get("decoding", "greedy")) == (quant, decoding)]
        label = quant if decoding == "greedy" else f"{quant}, {decoding}"
        axes[0].scatter([r["size_bytes"] / 1024 for r in sel], [100 * r["wer"] for r in sel], label=label,
                        marker="o" if decoding == "greedy" else "^")
        axes[1].scatter([r["rtf"] for r in sel], [100 * r["wer"] for r in sel], label=label,
                        marker="o" if decoding == "greedy" else "^")
        for r in sel:
            axes[0].annotate(r["budget"], (r["size_bytes"] / 1024, 100 * r["wer"]), fontsize=7)
    axes[0].set_xlabel(".tflite size (KiB)")
    axes[1].set_xlabel("real-time factor, 1 thread (LiteRT, streaming)")
    for ax in axes:
        ax.set_ylabel("test WER (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Deployed subnets: on-device test WER")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run() -> dict:
    from tf_todm.data.manifest import read_manifest
    from tf_todm.data.synthetic import ensure_default_corpus, format_summary
    from tf_todm.data.tokenizer import load_or_train_tokenizer
    out_dir = FLAGS.out_dir
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    timings = {}

    stage("corpus")
    t = time.time()
    corpus_dir = FLAGS.corpus_dir or os.path.join(out_dir, "corpus")
    corpus_summary = ensure_default_corpus(corpus_dir, FLAGS.corpus_hours, FLAGS.corpus_seed)
    if corpus_summary is not None:
        print(format_summary(corpus_summary))
    train_utts, dev_utts, test_utts = (read_manifest(os.path.join(corpus_dir, f"{s}.jsonl"))
                                       for s in ("train", "dev", "test"))
    timings["corpus_s"] = time.time() - t
    # the LM's text is read now, so a corpus that cannot give it fails before hours of training
    lm_text, lm_info = lm_training_text(corpus_dir, train_utts) if FLAGS.lm_weight > 0 else ([], None)
    if lm_info:
        lm_info.update(weight=FLAGS.lm_weight, length_bonus=FLAGS.lm_length_bonus, order=FLAGS.lm_order,
                       beam_size=FLAGS.lm_beam_size)
        print(f"token LM: fitted on the {lm_info['fitted_on']} ({lm_info['sentences']} sentences)", flush=True)

    stage("tokenizer")
    run_dir = os.path.join(out_dir, "supernet")
    tokenizer_path = os.path.join(run_dir, "tokenizer.model")
    tokenizer = load_or_train_tokenizer(tokenizer_path, [u.text for u in train_utts], FLAGS.vocab_size)
    print(f"tokenizer: {tokenizer_path} ({tokenizer.vocab_size} pieces incl. blank)")

    stage("supernet training")
    t = time.time()
    train_summary, reused = train_supernet(run_dir, train_utts, dev_utts, tokenizer)
    timings["supernet_s"] = time.time() - t
    if reused:  # an earlier run's supernet: report the time its training took, not the reload
        timings["supernet_s"] = float(train_summary["elapsed_seconds"])

    stage("search")
    t = time.time()
    from tf_todm.training.restore import load_trained_model
    model = load_trained_model(run_dir)
    from tf_todm.models.batch_norm_calibration import calibration_batches, has_batch_norm
    calibration = (calibration_batches(train_utts, tokenizer, FLAGS.batch_size, FLAGS.bn_calibration_batches)
                   if has_batch_norm(model) else None)
    results = run_search(model, tokenizer, dev_utts, out_dir, calibration)
    timings["search_s"] = time.time() - t

    stage("export + on-device evaluation")
    t = time.time()
    rows = export_and_evaluate(model, results, tokenizer_path, train_utts, test_utts, out_dir, calibration,
                               lm_text)
    timings["export_evaluate_s"] = time.time() - t
    timings["total_s"] = time.time() - started + (timings["supernet_s"] if reused else 0.0)

    plot_deploy(rows, os.path.join(out_dir, "deploy.png"))
    report = {"models": rows, "corpus": corpus_summary,
              "supernet": {k: v for k, v in train_summary.items() if k != "last_scalars"},
              "timings": timings, "supernet_reused": reused, "argv": sys.argv, "lm": lm_info,
              "int16x8_when_int8_ratio": FLAGS.int16x8_when_int8_ratio}
    tmp = os.path.join(out_dir, ".report.json.tmp")
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(tmp, os.path.join(out_dir, "report.json"))
    stage("report")
    print(format_table(rows))
    print(f"\nwrote {out_dir}/report.json, {out_dir}/pareto.png, {out_dir}/deploy.png")
    return report


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        sys.exit(1)
    if not FLAGS.budgets:
        print("error: --budgets is required (a JSON file of device budgets)", file=sys.stderr)
        sys.exit(1)
    try:
        run()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
