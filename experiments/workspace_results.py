"""Renders WORKSPACE.md's results section from the JSON files the benchmarks and the demo wrote.

    python -m experiments.workspace_results > /tmp/results.md

Every table names the command that produced its JSON; no number is typed by hand. A missing JSON
is reported as "not run" with the command to produce it, unless `--previous=WORKSPACE.md` holds an
earlier rendering of that section (artifacts stay on the machine that ran them): that rendering is
kept, marked as such.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("artifacts", "artifacts", "Artifacts folder.")
flags.DEFINE_string("previous", None, "An earlier WORKSPACE.md: sections whose JSON is not in --artifacts "
                    "keep their rendering from it.")

KEPT_NOTE = ("_Rendered in an earlier session from its JSON, which is not on this machine; the command "
             "above reproduces it._")

SECTIONS = []


def section(title: str, path: str, command: str):
    def register(render):
        SECTIONS.append((title, path, command, render))
        return render
    return register


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


@section("Default corpus, 8 hours (issue-3 run)", "corpus_8h/summary.json",
         "python -m experiments.make_corpus --out_dir=artifacts/corpus_8h --hours=8 --seed=0")
def corpus_8h(d):
    return corpus(d)


@section("Default corpus, 2 hours (demo, earlier runs)", "corpus/summary.json",
         "python -m experiments.make_corpus --out_dir=artifacts/corpus --hours=2 --seed=0")
def corpus(d):
    rows = ["| split | utterances | hours | voices | command utts | open utts |", "|---|---|---|---|---|---|"]
    for name in ("train", "dev", "test"):
        s = d["splits"][name]
        rows.append(f"| {name} | {s['utterances']} | {s['hours']:.3f} | {s['num_voices']} | "
                    f"{s['domains']['command']['utterances']} | {s['domains']['open']['utterances']} |")
    aug = d["augmentation"]
    rows.append("")
    rows.append(f"Engines {', '.join(d['engines'])}; {d['num_voices']} voices; clean {aug['clean']}, "
                f"noise {aug['noise']}, reverb {aug['reverb']}; SNR dB p10/p50/p90 "
                f"{aug['snr_db_quantiles_10_50_90']}. Splits are disjoint in voices and sentences.")
    return rows


@section("RNN-T loss benchmark (B=8, T=200, U=50, V=500)", "bench/loss.json",
         "python -m experiments.benchmark_loss --output_json=artifacts/bench/loss.json")
def loss(d):
    m, p = d["median_ms"], d["peak_extra_mib"]
    return [
        "| implementation | median ms (fwd+bwd) | peak extra MiB |", "|---|---|---|",
        *[f"| {k} | {m[k]:.0f} | {p[k]:.0f} |" for k in m],
        "",
        f"- exact loss, ours vs autodiff through `tf.scan`: **{d['exact_speedup_vs_naive']:.2f}x** faster "
        f"(target >= 3x), memory ratio **{d['exact_memory_ratio_ours_over_naive']:.3f}** (target <= 0.333); "
        f"loss values agree (relative difference {d['exact_loss_rel_diff_vs_naive']}).",
        f"- pruned (S={d['shape']['prune_range']}) vs exact, joiner included: "
        f"**{d['pruned_speedup_vs_exact_with_joiner']:.2f}x** faster (target >= 5x), memory ratio "
        f"{d['pruned_memory_ratio_over_exact_with_joiner']:.3f}.",
    ]


@section("Training step: the losses' XLA path (bucket-padded shapes) vs plain TF, issue-3 recipe, same real batches",
         "bench/train_step.json",
         "python -m experiments.benchmark_train_step --flagfile=experiments/flags/single_45min.cfg "
         "--tokenizer=artifacts/single_45min_8h_keep10/tokenizer.model --num_batches=300 "
         "--output_json=artifacts/bench/train_step.json")
def train_step(d):
    rows = ["| variant | steps | total s | first step s | median step s | second half s | audio s per s | "
            "loss shapes raw / bucketed |", "|---|---|---|---|---|---|---|---|"]
    for name, r in d["variants"].items():
        rows.append(f"| {name} (xla_loss={r['xla_loss']}) | {r['steps']} | {r['total_s']:.1f} | "
                    f"{r['first_step_s']:.1f} | {r['median_step_s']:.3f} | {r['second_half_s']:.1f} | "
                    f"{r['audio_seconds'] / r['total_s']:.1f} | {r['shapes']['raw']} / {r['shapes']['bucketed']} |")
    if "speedup_total_tf_over_xla" in d:
        rows += ["", f"Speed-up of the XLA path over plain TF: **{d['speedup_total_tf_over_xla']:.2f}x** over all "
                 f"{d['num_batches']} steps (trace and compilations included), "
                 f"{d['speedup_second_half_tf_over_xla']:.2f}x over the second half. The first losses agree "
                 f"to 1e-3 relative (checked by the script)."]
    return rows


section("Training step before this change: the previous default (XLA gather compiled per raw shape, TF "
        "recursion) timed by the same script on a checkout of 13ee892, same 300 batches",
        "bench/train_step_at_13ee892.json",
        "git worktree add /tmp/at_13ee892 13ee892 && cp experiments/benchmark_train_step.py "
        "/tmp/at_13ee892/experiments/ && cp tf_todm/losses/shape_buckets.py /tmp/at_13ee892/tf_todm/losses/ && "
        "ln -s $PWD/artifacts /tmp/at_13ee892/artifacts && cd /tmp/at_13ee892 && python -m "
        "experiments.benchmark_train_step --flagfile=experiments/flags/single_45min.cfg "
        "--tokenizer=artifacts/single_45min_8h_keep10/tokenizer.model --num_batches=300 --variants=default "
        "--output_json=artifacts/bench/train_step_at_13ee892.json")(train_step)


@section("Training loop A/B: 500 real training steps each (pipeline live, no evals), plain TF vs XLA losses vs the "
         "previous default (checkout of 13ee892), interleaved", "bench/train_loop_ab.json",
         "git worktree add /tmp/at_13ee892 13ee892 && ln -s $PWD/artifacts /tmp/at_13ee892/artifacts && "
         "bash experiments/ab_train_loop.sh /tmp/at_13ee892 artifacts/bench/train_loop_ab.json")
def train_loop_ab(d):
    rows = ["| run (in order) | elapsed s | steps |", "|---|---|---|"]
    rows += [f"| {name} | {r['elapsed_seconds']:.1f} | {r['steps']} |" for name, r in d["runs"].items()]
    return rows + ["", f"Plain TF (the new default) is **{d['speedup_tf_over_old']:.2f}x** faster than the previous "
                   f"default and {d['speedup_tf_over_xla']:.2f}x faster than the bucketed XLA path, in wall time "
                   f"of the real loop (means of the two runs of each checkout)."]


@section("Single model, 45 minutes on 2 cores (issue 3 target), test split of the 8-h corpus per domain",
         "single_45min_8h/eval_test.json",
         "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
         "--out_dir=artifacts/single_45min_8h && python -m experiments.evaluate_run "
         "--run_dir=artifacts/single_45min_8h --manifest=artifacts/corpus_8h/test.jsonl "
         "--output_json=artifacts/single_45min_8h/eval_test.json")
def single_model(d):
    targets = {"command": 0.05, "open": 0.30}
    rows = ["| domain | utterances | WER % | CER % | target WER % | met |", "|---|---|---|---|---|---|"]
    for domain, r in d["domains"].items():
        target = targets.get(domain)
        met = "-" if target is None else str(r["wer"] <= target)
        rows.append(f"| {domain} | {r['num_utterances']} | {pct(r['wer'])} | {pct(r['cer'])} | "
                    f"{pct(target)} | {met} |")
    rows.append(f"| all | {d['num_utterances']} | {pct(d['wer'])} | {pct(d['cer'])} | | |")
    rows += speaker_rows(d)
    examples = d["hypotheses"][:4]
    rows += ["", "Examples (reference → hypothesis):"]
    rows += [f"- `{h['reference']}` → `{h['hypothesis']}`" for h in examples]
    return rows


section("Issue 3 follow-up: the same 45 minutes with speed perturbation (+-10%) from epoch 3, test split of "
        "the 8-h corpus", "single_45min_8h_sp/eval_test.json",
        "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
        "--train=speed_perturb=0.1 --train=augment_from_epoch=3 --out_dir=artifacts/single_45min_8h_sp && "
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_sp "
        "--manifest=artifacts/corpus_8h/test.jsonl --output_json=artifacts/single_45min_8h_sp/eval_test.json"
        )(single_model)


def lm_fusion_tuning(d):
    """Rows of an `experiments.tune_lm_fusion` result: the LM's dev cross-entropy per order, then
    dev WER per setting (greedy, beam, fused grid) per domain, and the chosen setting."""
    domains = list(d["rows"][0]["domains"])
    fitted_on = ("the corpus train text: the training transcripts and the text-only train sentences"
                 if d.get("lm_train_text") else "the training transcripts")
    rows = ["LM cross-entropy on the whole dev split (nats per token, end of sentence included; "
            f"fitted on {fitted_on}):", "",
            "| order | " + " | ".join(domains) + " |", "|---|" + "---|" * len(domains)]
    for order, per_domain in sorted(d["lm_dev_nats_per_token"].items(), key=lambda kv: int(kv[0])):
        rows.append(f"| {order} | " + " | ".join(f"{per_domain[dom]:.3f}" for dom in domains) + " |")
    rows += ["", f"Dev WER on {d['num_utterances']} dev utterances (stratified by domain and voice), "
             f"{d['lm_order']}-gram token LM:", "",
             "| decoding | beam | LM weight | length bonus | WER % | " +
             " | ".join(f"{dom} %" for dom in domains) + " |",
             "|---|---|---|---|---|" + "---|" * len(domains)]
    best = d["best"]
    for r in d["rows"]:
        mark = " **(chosen)**" if (r["weight"], r["length_bonus"]) == (best["weight"], best["length_bonus"]) else ""
        rows.append(f"| {r['kind']}{mark} | {r['beam_size']} | {r['weight']:g} | {r['length_bonus']:g} | "
                    f"{pct(r['wer'])} | " + " | ".join(pct(r["domains"][dom]["wer"]) for dom in domains) + " |")
    return rows


section("Issue 3 decoding: LM shallow fusion tuned on dev (the 8-h run above, 6-gram token LM fitted on the "
        "training transcripts)", "single_45min_8h/lm_fusion_dev.json",
        "python -m experiments.tune_lm_fusion --run_dir=artifacts/single_45min_8h "
        "--manifest=artifacts/corpus_8h/dev.jsonl --lm_train_manifest=artifacts/corpus_8h/train.jsonl "
        "--beam_size=4 --max_utterances=200 --lm_weights=0.3,0.5,0.7,0.9 --lm_length_bonuses=0.3,0.7,1.1,1.5 "
        "--tune_json=artifacts/single_45min_8h/lm_fusion_dev.json"
        )(lambda d: lm_fusion_tuning(d) + ["", "Plot: `artifacts/single_45min_8h/lm_fusion_dev.png`."])


section("Issue 3 decoding: beam search (4) without LM, test split of the 8-h corpus",
        "single_45min_8h/eval_test_beam4.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h "
        "--manifest=artifacts/corpus_8h/test.jsonl --beam_size=4 "
        "--output_json=artifacts/single_45min_8h/eval_test_beam4.json")(single_model)


section("Issue 3 decoding: beam search (4) + 6-gram token LM, weight 0.7 and length bonus 1.5 as chosen on dev, "
        "test split of the 8-h corpus", "single_45min_8h/eval_test_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h "
        "--manifest=artifacts/corpus_8h/test.jsonl --beam_size=4 --lm_train_manifest=artifacts/corpus_8h/train.jsonl "
        "--lm_weight=0.7 --lm_length_bonus=1.5 --output_json=artifacts/single_45min_8h/eval_test_beam4_lm.json"
        )(single_model)


section("Issue 3: the same run's last 3 checkpoints averaged (all it kept; one setting, declared before it ran), "
        "greedy, test split of the 8-h corpus", "single_45min_8h/eval_test_avg3.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=3 "
        "--output_json=artifacts/single_45min_8h/eval_test_avg3.json")(single_model)


section("Issue 3: LM fusion retuned on dev for the 5 averaged checkpoints (weight x bonus grid around the earlier "
        "choice)", "single_45min_8h_keep10/lm_fusion_dev_avg5.json",
        "python -m experiments.tune_lm_fusion --run_dir=artifacts/single_45min_8h_keep10 --average_last=5 "
        "--manifest=artifacts/corpus_8h/dev.jsonl --lm_train_manifest=artifacts/corpus_8h/train.jsonl "
        "--beam_size=4 --max_utterances=200 --lm_weights=0.5,0.7,0.9 --lm_length_bonuses=1.5,2.0,2.5 "
        "--tune_json=artifacts/single_45min_8h_keep10/lm_fusion_dev_avg5.json"
        )(lambda d: lm_fusion_tuning(d) + ["", "Plot: `artifacts/single_45min_8h_keep10/lm_fusion_dev_avg5.png`."])


def average_sweep(files: dict) -> list[str]:
    """Rows of `evaluate_run` results {"eval_dev_avgN": JSON}: dev WER per number of averaged
    checkpoints, and the N with the lowest overall dev WER."""
    runs = sorted(((d.get("average_last", 1), d) for d in files.values()), key=lambda nd: nd[0])
    domains = list(runs[0][1]["domains"])
    rows = ["| checkpoints averaged | steps covered (at most) | WER % | " + " | ".join(f"{dom} WER %" for dom in domains) +
            " | CER % |", "|---|---|---|" + "---|" * len(domains) + "---|"]
    for n, d in runs:
        rows.append(f"| {n} | {300 * (n - 1)} | {pct(d['wer'])} | " +
                    " | ".join(pct(d["domains"][dom]["wer"]) for dom in domains) + f" | {pct(d['cer'])} |")
    best = min(runs, key=lambda nd: nd[1]["wer"])[0]
    rows += ["", f"Lowest dev WER: {best} checkpoints (the test-split tables below use it). Checkpoints are "
             f"300 steps apart, the last one at the 45-minute stop (so the newest gap can be shorter)."]
    return rows


section("Issue 3: how many checkpoints to average, chosen on the whole dev split (a rerun of the 45-minute "
        "recipe keeping 10 checkpoints), greedy", "single_45min_8h_keep10/eval_dev_avg*.json",
        "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
        "--train=max_checkpoints_to_keep=10 --out_dir=artifacts/single_45min_8h_keep10 && for n in 1 3 5 10; do "
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_keep10 "
        "--manifest=artifacts/corpus_8h/dev.jsonl --average_last=$n "
        "--output_json=artifacts/single_45min_8h_keep10/eval_dev_avg$n.json; done")(average_sweep)


section("Issue 3: the rerun keeping 10 checkpoints, newest checkpoint alone, greedy, test split of the 8-h corpus",
        "single_45min_8h_keep10/eval_test.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_keep10 "
        "--manifest=artifacts/corpus_8h/test.jsonl --output_json=artifacts/single_45min_8h_keep10/eval_test.json"
        )(single_model)


section("Issue 3: the 5 averaged checkpoints chosen on dev, greedy, test split of the 8-h corpus",
        "single_45min_8h_keep10/eval_test_avg5.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_keep10 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 "
        "--output_json=artifacts/single_45min_8h_keep10/eval_test_avg5.json")(single_model)


section("Issue 3: the 5 averaged checkpoints, beam search (4) + 6-gram token LM (weight 0.7, bonus 1.5: the "
        "setting dev chose for the earlier run, not retuned), test split of the 8-h corpus",
        "single_45min_8h_keep10/eval_test_avg5_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_keep10 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5 "
        "--output_json=artifacts/single_45min_8h_keep10/eval_test_avg5_beam4_lm.json")(single_model)


section("Issue 3: the 5 averaged checkpoints, beam search (4) + 6-gram token LM with the retuned setting "
        "(weight 0.9, bonus 1.5), test split of the 8-h corpus",
        "single_45min_8h_keep10/eval_test_avg5_beam4_lm_retuned.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_keep10 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h/train.jsonl --lm_weight=0.9 --lm_length_bonus=1.5 "
        "--output_json=artifacts/single_45min_8h_keep10/eval_test_avg5_beam4_lm_retuned.json")(single_model)


section("Issue 3, stop 22: the 45-minute recipe rerun with plain-TF losses (the new default; 7859 steps), how many "
        "checkpoints to average, whole dev split, greedy", "single_45min_8h_tfloss/eval_dev_avg*.json",
        "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
        "--train=max_checkpoints_to_keep=10 --out_dir=artifacts/single_45min_8h_tfloss && for n in 1 3 5 10; do "
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_tfloss "
        "--manifest=artifacts/corpus_8h/dev.jsonl --average_last=$n "
        "--output_json=artifacts/single_45min_8h_tfloss/eval_dev_avg$n.json; done")(average_sweep)


section("Issue 3, stop 22: that rerun's 5 averaged checkpoints (chosen on dev), greedy, test split of the 8-h corpus",
        "single_45min_8h_tfloss/eval_test_avg5.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_tfloss "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 "
        "--output_json=artifacts/single_45min_8h_tfloss/eval_test_avg5.json")(single_model)


section("Issue 3, stop 22: that rerun's 5 averaged checkpoints, beam search (4) + 6-gram token LM (weight 0.7, bonus "
        "1.5, carried over, not retuned), test split of the 8-h corpus",
        "single_45min_8h_tfloss/eval_test_avg5_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_tfloss "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5 "
        "--output_json=artifacts/single_45min_8h_tfloss/eval_test_avg5_beam4_lm.json")(single_model)


@section("Issue 3, stop 23: the 8-h corpus with 8 more flite training voices (train split only)",
         "corpus_8h_flite8/summary.json",
         "python -m experiments.make_corpus --out_dir=artifacts/corpus_8h_flite8 --hours=8 --seed=0 "
         "--extra_train_voices=flite8")
def corpus_8h_flite8(d):
    rows = corpus(d)
    rows.append(f"Extra training voices: {', '.join(d.get('extra_train_voices', []))}.")
    return rows


@section("Issue 3, stop 23: dev and test of that corpus are byte-identical to the default 8-h corpus's",
         "corpus_8h_flite8/same_splits.json",
         "python -m experiments.compare_corpus_splits --corpus_a=artifacts/corpus_8h "
         "--corpus_b=artifacts/corpus_8h_flite8 --splits=dev,test "
         "--output_json=artifacts/corpus_8h_flite8/same_splits.json")
def same_splits(d):
    rows = ["| split | files compared (manifest + audio) | identical |", "|---|---|---|"]
    rows += [f"| {s['split']} | {s['files']} | {s['identical']} |" for s in d["splits"]]
    return rows


FLITE8_RUN = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
              "--corpus_dir=artifacts/corpus_8h_flite8 --train=max_checkpoints_to_keep=10 "
              "--out_dir=artifacts/single_45min_8h_flite8")
FLITE8_AVERAGE = 5  # chosen on the whole dev split (section below), before the test split was decoded

section("Issue 3, stop 23: the 45-minute recipe on the corpus with 8 more flite training voices, how many "
        "checkpoints to average, whole dev split, greedy", "single_45min_8h_flite8/eval_dev_avg*.json",
        FLITE8_RUN + " && for n in 1 3 5 10; do python -m experiments.evaluate_run "
        "--run_dir=artifacts/single_45min_8h_flite8 --manifest=artifacts/corpus_8h/dev.jsonl --average_last=$n "
        "--output_json=artifacts/single_45min_8h_flite8/eval_dev_avg$n.json; done")(average_sweep)


section(f"Issue 3, stop 23: that run's {FLITE8_AVERAGE} averaged checkpoints (chosen on dev), greedy, test split "
        "of the 8-h corpus", f"single_45min_8h_flite8/eval_test_avg{FLITE8_AVERAGE}.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_flite8 "
        f"--manifest=artifacts/corpus_8h/test.jsonl --average_last={FLITE8_AVERAGE} "
        f"--output_json=artifacts/single_45min_8h_flite8/eval_test_avg{FLITE8_AVERAGE}.json")(single_model)


section(f"Issue 3, stop 23: that run's {FLITE8_AVERAGE} averaged checkpoints, beam search (4) + 6-gram token LM "
        "fitted on its own training transcripts (weight 0.7, bonus 1.5, carried over, not retuned), test split of "
        "the 8-h corpus", f"single_45min_8h_flite8/eval_test_avg{FLITE8_AVERAGE}_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_flite8 "
        f"--manifest=artifacts/corpus_8h/test.jsonl --average_last={FLITE8_AVERAGE} --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5 "
        f"--output_json=artifacts/single_45min_8h_flite8/eval_test_avg{FLITE8_AVERAGE}_beam4_lm.json")(single_model)


section("Issue 3, stop 24: LM fusion retuned on dev for the flite8 run's 5 averaged checkpoints (a wider grid: "
        "earlier choices sat at the grid's edge)", "single_45min_8h_flite8/lm_fusion_dev_avg5.json",
        "python -m experiments.tune_lm_fusion --run_dir=artifacts/single_45min_8h_flite8 --average_last=5 "
        "--manifest=artifacts/corpus_8h/dev.jsonl --lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl "
        "--beam_size=4 --max_utterances=200 --lm_weights=0.7,0.9,1.1,1.3 --lm_length_bonuses=0.5,1.0,1.5,2.0 "
        "--tune_json=artifacts/single_45min_8h_flite8/lm_fusion_dev_avg5.json"
        )(lambda d: lm_fusion_tuning(d) + ["", "Plot: `artifacts/single_45min_8h_flite8/lm_fusion_dev_avg5.png`."])

FLITE8_LM = (0.7, 2.0)  # the retune's choice (lowest dev WER of the grid above), applied to test once

section(f"Issue 3, stop 24: the flite8 run's 5 averaged checkpoints, beam search (4) + 6-gram token LM with the "
        f"retuned setting (weight {FLITE8_LM[0]}, bonus {FLITE8_LM[1]}), test split of the 8-h corpus",
        "single_45min_8h_flite8/eval_test_avg5_beam4_lm_retuned.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_flite8 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        f"--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl --lm_weight={FLITE8_LM[0]} "
        f"--lm_length_bonus={FLITE8_LM[1]} "
        "--output_json=artifacts/single_45min_8h_flite8/eval_test_avg5_beam4_lm_retuned.json")(single_model)


@section("Issue 3: dev WER per voice of every 45-minute run kept on this machine, 5 averaged checkpoints, greedy",
         "single_45min_8h_{flite8,flite8_vtlp,keep10,rerun23,tfloss}/eval_dev_avg5.json",  # stop 24's runs; later
         # runs are compared in their own sections
         "python -m experiments.evaluate_run --run_dir=artifacts/RUN --manifest=artifacts/corpus_8h/dev.jsonl "
         "--average_last=5 --output_json=artifacts/RUN/eval_dev_avg5.json (per run; the runs' own commands are in "
         "their sections)")
def dev_per_voice(files: dict) -> list[str]:
    """Voice x run table of dev WER from `evaluate_run` results (each names its `run_dir`)."""
    runs = {os.path.basename(os.path.normpath(d["run_dir"])): d for d in files.values()}
    voices = list(next(iter(runs.values()))["speakers"])
    rows = ["| voice | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for voice in voices:
        rows.append(f"| {voice} | " + " | ".join(pct(d["speakers"].get(voice, {}).get("wer")) for d in runs.values())
                    + " |")
    rows.append("| all | " + " | ".join(pct(d["wer"]) for d in runs.values()) + " |")
    steps = [load_json(os.path.join(d["run_dir"], "train_summary.json")) or {} for d in runs.values()]
    rows.append("| training steps in the 45 minutes | " + " | ".join(str(s.get("step", "-")) for s in steps) + " |")
    return rows


RERUN23 = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
           "--train=max_checkpoints_to_keep=10 --out_dir=artifacts/single_45min_8h_rerun23")

section("Issue 3, stop 23 control: stop 22's recipe on the default 8-h corpus rerun the same day as the flite8 run "
        "(same machine speed), 5 averaged checkpoints (declared before it ran), whole dev split, greedy",
        "single_45min_8h_rerun23/eval_dev_avg5.json",
        RERUN23 + " && python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_rerun23 "
        "--manifest=artifacts/corpus_8h/dev.jsonl --average_last=5 "
        "--output_json=artifacts/single_45min_8h_rerun23/eval_dev_avg5.json")(single_model)


section("Issue 3, stop 23 control: the same-day rerun's 5 averaged checkpoints, greedy, test split of the 8-h corpus",
        "single_45min_8h_rerun23/eval_test_avg5.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_rerun23 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 "
        "--output_json=artifacts/single_45min_8h_rerun23/eval_test_avg5.json")(single_model)


section("Issue 3, stop 23 control: the same-day rerun's 5 averaged checkpoints, beam search (4) + 6-gram token LM "
        "(weight 0.7, bonus 1.5), test split of the 8-h corpus",
        "single_45min_8h_rerun23/eval_test_avg5_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_rerun23 "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5 "
        "--output_json=artifacts/single_45min_8h_rerun23/eval_test_avg5_beam4_lm.json")(single_model)


def runs_side_by_side(files: dict) -> list[str]:
    """Domain and voice x run table of `evaluate_run` results (one column per run folder, or per
    file when one run was decoded more than once), with the checkpoints each column averaged: the
    step-matched comparisons."""
    names = [os.path.basename(os.path.normpath(d["run_dir"])) for d in files.values()]
    runs = dict(zip(names if len(set(names)) == len(names) else files, files.values()))
    first = next(iter(runs.values()))
    rows = ["| WER % | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for domain in first["domains"]:
        rows.append(f"| {domain} | " + " | ".join(pct(d["domains"].get(domain, {}).get("wer")) for d in runs.values())
                    + " |")
    rows.append("| all | " + " | ".join(pct(d["wer"]) for d in runs.values()) + " |")
    for voice in first.get("speakers", {}):
        rows.append(f"| {voice} | " + " | ".join(pct(d["speakers"].get(voice, {}).get("wer")) for d in runs.values())
                    + " |")
    rows.append("| checkpoints averaged (steps) | " + " | ".join(
        ", ".join(str(s) for s in d.get("checkpoint_steps", [])) or "-" for d in runs.values()) + " |")
    if any(d.get("lm") for d in runs.values()):
        rows.append("| LM fitted on, weight / length bonus | " + " | ".join(lm_setting(d.get("lm")) for d in runs.values())
                    + " |")
    return rows


def lm_setting(lm: dict | None) -> str:
    """"<what the LM was fitted on>, <weight> / <bonus>" of an `evaluate_run` result's "lm" field."""
    if not lm:
        return "no LM"
    fitted_on = [name for key, name in (("train_manifest", "transcripts"), ("train_text", "corpus text"))
                 if lm.get(key)]
    return f"{' + '.join(fitted_on) or '?'}, {lm['weight']:g} / {lm['length_bonus']:g}"


VTLP_RUN = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
            "--corpus_dir=artifacts/corpus_8h_flite8 --corpus_extra_train_voices=flite8 --train=vtlp=0.1 "
            "--train=max_checkpoints_to_keep=10 --out_dir=artifacts/single_45min_8h_flite8_vtlp")
VTLP_STEP = 6000  # the newest step all three runs kept five checkpoints up to (declared before decoding)
_AT_STEP = (f"for r in flite8 flite8_vtlp rerun23; do python -m experiments.evaluate_run "
            f"--run_dir=artifacts/single_45min_8h_$r --average_last=5 --up_to_step={VTLP_STEP} ")
_AT_STEP_RUNS = "single_45min_8h_{flite8,flite8_vtlp,rerun23}"  # rerun23: the default-corpus control
_LM = "--beam_size=4 --lm_weight=0.7 --lm_length_bonus=1.5 --lm_train_manifest="

section(f"Issue 3, stop 24: three runs at equal steps (5 checkpoints up to step {VTLP_STEP} averaged in each): the "
        "default corpus (stop 23's control), the flite8 corpus, the flite8 corpus with VTLP (+-10%, from the "
        "first step); whole dev split, greedy",
        f"{_AT_STEP_RUNS}/eval_dev_avg5_s{VTLP_STEP}.json",
        VTLP_RUN + " && " + _AT_STEP + "--manifest=artifacts/corpus_8h/dev.jsonl "
        f"--output_json=artifacts/single_45min_8h_$r/eval_dev_avg5_s{VTLP_STEP}.json; done")(runs_side_by_side)

section(f"Issue 3, stop 24: the same three runs at step {VTLP_STEP}, greedy, test split of the 8-h corpus",
        f"{_AT_STEP_RUNS}/eval_test_avg5_s{VTLP_STEP}.json",
        _AT_STEP + "--manifest=artifacts/corpus_8h/test.jsonl "
        f"--output_json=artifacts/single_45min_8h_$r/eval_test_avg5_s{VTLP_STEP}.json; done")(runs_side_by_side)

section(f"Issue 3, stop 24: the same three runs at step {VTLP_STEP}, beam search (4) + 6-gram token LM fitted on "
        "each run's own training transcripts (weight 0.7, bonus 1.5), test split of the 8-h corpus",
        f"{_AT_STEP_RUNS}/eval_test_avg5_s{VTLP_STEP}_beam4_lm.json",
        _AT_STEP + "--manifest=artifacts/corpus_8h/test.jsonl " + _LM +
        "artifacts/$([ $r = rerun23 ] && echo corpus_8h || echo corpus_8h_flite8)/train.jsonl "
        f"--output_json=artifacts/single_45min_8h_$r/eval_test_avg5_s{VTLP_STEP}_beam4_lm.json; done")(runs_side_by_side)

section("Issue 3, stop 24: the VTLP run as the 45 minutes left it (its newest 5 checkpoints), greedy, test split "
        "of the 8-h corpus", "single_45min_8h_flite8_vtlp/eval_test_avg5.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_flite8_vtlp "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 "
        "--output_json=artifacts/single_45min_8h_flite8_vtlp/eval_test_avg5.json")(single_model)

section("Issue 3, stop 24: the VTLP run's newest 5 checkpoints, beam search (4) + 6-gram token LM (weight 0.7, "
        "bonus 1.5), test split of the 8-h corpus", "single_45min_8h_flite8_vtlp/eval_test_avg5_beam4_lm.json",
        "python -m experiments.evaluate_run --run_dir=artifacts/single_45min_8h_flite8_vtlp "
        "--manifest=artifacts/corpus_8h/test.jsonl --average_last=5 --beam_size=4 "
        "--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl --lm_weight=0.7 --lm_length_bonus=1.5 "
        "--output_json=artifacts/single_45min_8h_flite8_vtlp/eval_test_avg5_beam4_lm.json")(single_model)


def newest5_loop(runs: list) -> str:
    """The shell loop that decodes each 45-minute run of `runs` (folder suffixes after
    `single_45min_8h_`) with its newest 5 checkpoints averaged; the caller adds the rest."""
    return (f"for r in {' '.join(runs)}; do python -m experiments.evaluate_run "
            "--run_dir=artifacts/single_45min_8h_$r --average_last=5 ")


def runs_folder_pattern(runs: list) -> str:
    return "single_45min_8h_{" + ",".join(runs) + "}/"


def flite8_test_sections(label: str, runs: list, which: str = "") -> None:
    """Registers the greedy and the beam + LM test tables of `runs` side by side (newest 5)."""
    files, loop = runs_folder_pattern(runs), newest5_loop(runs)
    section(f"{label}: the same two runs{which}, greedy, test split",
            files + "eval_test_avg5.json",
            loop + "--manifest=artifacts/corpus_8h_flite8/test.jsonl "
            "--output_json=artifacts/single_45min_8h_$r/eval_test_avg5.json; done")(runs_side_by_side)
    section(f"{label}: the same two runs{which}, beam search (4) + 6-gram token LM (weight 0.7, bonus 1.5), test split",
            files + "eval_test_avg5_beam4_lm.json",
            loop + "--manifest=artifacts/corpus_8h_flite8/test.jsonl " + _LM +
            "artifacts/corpus_8h_flite8/train.jsonl --output_json=artifacts/single_45min_8h_$r/eval_test_avg5_beam4_lm.json;"
            " done")(runs_side_by_side)


AB25 = ["flite8_rerun25", "flite8_vtlp_e3"]
AB25_RUNS = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min_flite8.cfg "
             "--train=max_checkpoints_to_keep=30 --out_dir=artifacts/single_45min_8h_flite8_rerun25 && "
             "python -m experiments.train_single --flagfile=experiments/flags/single_45min_flite8.cfg "
             "--train=vtlp=0.1 --train=augment_from_epoch=3 --train=max_checkpoints_to_keep=10 "
             "--out_dir=artifacts/single_45min_8h_flite8_vtlp_e3")

section("Issue 3, stop 25: same-day A/B on the flite8 recipe, without and with VTLP (+-10%) from epoch 3 (after "
        "the blank plateau), as the 45 minutes left each run (newest 5 checkpoints averaged); whole dev split, greedy",
        runs_folder_pattern(AB25) + "eval_dev_avg5.json",
        AB25_RUNS + " && " + newest5_loop(AB25) + "--manifest=artifacts/corpus_8h_flite8/dev.jsonl "
        "--output_json=artifacts/single_45min_8h_$r/eval_dev_avg5.json; done")(runs_side_by_side)

section("Issue 3, stop 25: the same two runs at equal steps (the 5 checkpoints up to step 7800, the last multiple of 300 "
        "both reached; declared before decoding: this table chooses the recipe), whole dev split, greedy",
        runs_folder_pattern(AB25) + "eval_dev_avg5_s7800.json",
        newest5_loop(AB25) + "--up_to_step=7800 --manifest=artifacts/corpus_8h_flite8/dev.jsonl "
        "--output_json=artifacts/single_45min_8h_$r/eval_dev_avg5_s7800.json; done")(runs_side_by_side)

flite8_test_sections("Issue 3, stop 25", AB25)


DECAY26 = ["flite8_vtlp_e3", "flite8_vtlp_e3_decay20"]
DECAY26_RUN = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min_flite8_vtlp.cfg "
               "--train=lr_time_decay=0.2 --out_dir=artifacts/single_45min_8h_flite8_vtlp_e3_decay20")

section("Issue 3, stop 26: the recipe with the learning rate decayed linearly to 0 over the last 20% of its 45 minutes "
        "(TimeBudgetDecay) vs the same recipe without it (stop 25's VTLP-from-epoch-3 run; the two are identical "
        "until minute 36), as the 45 minutes left each (newest 5 checkpoints; the run without decay also at step "
        "8100, the decayed run's last multiple of 300; newest 1 of the decayed run as a second look), whole dev split, "
        "greedy",
        "single_45min_8h_flite8_vtlp_e3{/eval_dev_avg5,/eval_dev_avg5_s8100,_decay20/eval_dev_avg5,"
        "_decay20/eval_dev_avg1}.json",
        DECAY26_RUN + " && " + newest5_loop(DECAY26) + "--manifest=artifacts/corpus_8h_flite8/dev.jsonl "
        "--output_json=artifacts/single_45min_8h_$r/eval_dev_avg5.json; done; the same for the run without decay with "
        "--up_to_step=8100 --output_json=.../eval_dev_avg5_s8100.json and for the decayed run with --average_last=1 "
        "--output_json=.../eval_dev_avg1.json")(runs_side_by_side)

flite8_test_sections("Issue 3, stop 26", DECAY26)


LR26 = ["flite8_vtlp_e3", "flite8_vtlp_e3_lr2e-3"]
LR26_RUN = ("python -m experiments.train_single --flagfile=experiments/flags/single_45min_flite8_vtlp.cfg "
            "--train=base_lr=0.002 --out_dir=artifacts/single_45min_8h_flite8_vtlp_e3_lr2e-3")

section("Issue 3, stop 26: the recipe at twice the peak learning rate (Adam 2e-3) vs the recipe (stop 25's "
        "VTLP-from-epoch-3 run, 1e-3), as the 45 minutes left each (newest 5 checkpoints), whole dev split, greedy",
        runs_folder_pattern(LR26) + "eval_dev_avg5.json",
        LR26_RUN + " && " + newest5_loop(LR26) + "--manifest=artifacts/corpus_8h_flite8/dev.jsonl "
        "--output_json=artifacts/single_45min_8h_$r/eval_dev_avg5.json; done")(runs_side_by_side)

flite8_test_sections("Issue 3, stop 26", LR26, " (peak learning rate 1e-3 vs 2e-3)")


def lm_text_counts(d):
    """Sentence counts per domain of `experiments.make_lm_text`'s corpus train text."""
    rows = ["| domain | spoken train transcripts | text-only train sentences | dropped (a shared "
            f"{d['shared_ngram']}-gram with a dev/test sentence) | in the LM text | dev / test pool sentences |",
            "|---|---|---|---|---|---|"]
    for domain, c in d["domains"].items():
        rows.append(f"| {domain} | {c['spoken']} | {c['text_only']} | {c['dropped']} | {c['kept']} | "
                    f"{c['heldout_pool']['dev']} / {c['heldout_pool']['test']} |")
    rows += ["", f"{d['sentences']} sentences, {d['words']} words. The n-gram filter applies to the "
             f"{', '.join(d['filtered_domains'])} domain's text-only sentences (a fortune quoted twice with a word "
             "changed); commands come from one grammar and keep the pools' exact sentence disjointness."]
    examples = d["domains"].get("open", {}).get("dropped_examples", [])
    if examples:
        rows += ["", "First dropped sentences: " + "; ".join(f"\"{e}\"" for e in examples[:3]) + "."]
    return rows


LM27_RUN = "single_45min_8h_flite8_vtlp_e3"


def tune_lm27(weights: str, bonuses: str, more: str = "") -> str:
    """The `tune_lm_fusion` command of stops 27-28 on the recipe's run, for one weight x bonus grid;
    the caller adds the LM's training text and the result file."""
    return (f"python -m experiments.tune_lm_fusion --run_dir=artifacts/{LM27_RUN} --average_last=5 "
            "--manifest=artifacts/corpus_8h_flite8/dev.jsonl --beam_size=4 --max_utterances=200 "
            f"{more}--lm_weights={weights} --lm_length_bonuses={bonuses} ")


_TUNE27 = tune_lm27("0.5,0.7,0.9", "1.5,2.0,2.5")

section("Issue 3, stop 27: the corpus train text for the LM: the training transcripts plus the sentences the corpus "
        "plan assigned to train but never spoke (the analogue of LibriSpeech's LM text)",
        "corpus_8h_flite8/lm_text.txt.json",
        "python -m experiments.make_lm_text --corpus_dir=artifacts/corpus_8h_flite8 "
        "--out=artifacts/corpus_8h_flite8/lm_text.txt")(lm_text_counts)

section("Issue 3, stop 27 (run at stop 28): LM fusion tuned on dev for the recipe's run (newest 5 checkpoints), "
        "LM fitted on the training transcripts", f"{LM27_RUN}/lm_fusion_dev_avg5.json",
        _TUNE27 + f"--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl "
        f"--tune_json=artifacts/{LM27_RUN}/lm_fusion_dev_avg5.json"
        )(lambda d: lm_fusion_tuning(d) + ["", f"Plot: `artifacts/{LM27_RUN}/lm_fusion_dev_avg5.png`."])

section("Issue 3, stop 27 (run at stop 28): the same grid, LM fitted on the corpus train text",
        f"{LM27_RUN}/lm_fusion_dev_avg5_corpustext.json",
        _TUNE27 + f"--lm_train_text=artifacts/corpus_8h_flite8/lm_text.txt "
        f"--tune_json=artifacts/{LM27_RUN}/lm_fusion_dev_avg5_corpustext.json"
        )(lambda d: lm_fusion_tuning(d) + ["", f"Plot: `artifacts/{LM27_RUN}/lm_fusion_dev_avg5_corpustext.png`."])


_TUNE28 = tune_lm27("0.5,0.7,0.9,1.1", "0.5,1.0,1.5")

section("Issue 3, stop 28: both LMs chose the grid's smallest length bonus, so the grid was extended down (bonuses "
        "0.5-1.5, weights 0.5-1.1; the shared settings repeat the first grid's numbers exactly); LM fitted on the "
        "training transcripts", f"{LM27_RUN}/lm_fusion_dev_avg5_low_bonus.json",
        _TUNE28 + "--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl "
        f"--tune_json=artifacts/{LM27_RUN}/lm_fusion_dev_avg5_low_bonus.json"
        )(lambda d: lm_fusion_tuning(d) + ["", f"Plot: `artifacts/{LM27_RUN}/lm_fusion_dev_avg5_low_bonus.png`."])

section("Issue 3, stop 28: the extended grid, LM fitted on the corpus train text",
        f"{LM27_RUN}/lm_fusion_dev_avg5_corpustext_low_bonus.json",
        _TUNE28 + "--lm_train_text=artifacts/corpus_8h_flite8/lm_text.txt "
        f"--tune_json=artifacts/{LM27_RUN}/lm_fusion_dev_avg5_corpustext_low_bonus.json"
        )(lambda d: lm_fusion_tuning(d) + ["", f"Plot: `artifacts/{LM27_RUN}/lm_fusion_dev_avg5_corpustext_low_bonus.png`."])

section("Issue 3, stop 28: the corpus-text LM at order 8 instead of 6 (its dev cross-entropy is lower), at the "
        "chosen weight 0.7 / bonus 1.0 (declared before: test is decoded with order 8 only if it gains 0.5 points on "
        "dev)", f"{LM27_RUN}/lm_fusion_dev_avg5_corpustext_order8.json",
        tune_lm27("0.7", "1.0", more="--lm_order=8 ") +
        "--lm_train_text=artifacts/corpus_8h_flite8/lm_text.txt "
        f"--tune_json=artifacts/{LM27_RUN}/lm_fusion_dev_avg5_corpustext_order8.json")(lm_fusion_tuning)

LM28_TRANSCRIPTS = (0.7, 1.0)  # weight, bonus: the transcript LM's best dev WER over both grids
LM28_CORPUS_TEXT = (0.7, 1.0)  # the same for the corpus-text LM
_DECODE28 = (f"python -m experiments.evaluate_run --run_dir=artifacts/{LM27_RUN} --average_last=5 "
             "--manifest=artifacts/corpus_8h_flite8/test.jsonl --beam_size=4 ")

section("Issue 3, stop 28: the recipe's run (newest 5 checkpoints), beam search (4) + 6-gram token LM, each LM at "
        "the setting its two dev grids chose (declared before decoding: the lowest dev WER over both grids), test "
        "split: LM fitted on the corpus train text (first column) vs on the training transcripts (second)",
        f"{LM27_RUN}/eval_test_avg5_beam4_lm_{{corpustext,devtuned28}}.json",
        _DECODE28 + "--lm_train_text=artifacts/corpus_8h_flite8/lm_text.txt "
        f"--lm_weight={LM28_CORPUS_TEXT[0]} --lm_length_bonus={LM28_CORPUS_TEXT[1]} "
        f"--output_json=artifacts/{LM27_RUN}/eval_test_avg5_beam4_lm_corpustext.json && " + _DECODE28 +
        "--lm_train_manifest=artifacts/corpus_8h_flite8/train.jsonl "
        f"--lm_weight={LM28_TRANSCRIPTS[0]} --lm_length_bonus={LM28_TRANSCRIPTS[1]} "
        f"--output_json=artifacts/{LM27_RUN}/eval_test_avg5_beam4_lm_devtuned28.json")(runs_side_by_side)


@section("Training step on the two corpora (stop 23): default 8-h corpus vs the flite8 corpus, first 200 batches "
         "of each, plain-TF losses, run one after the other on a quiet machine", "bench/train_step_corpus_8h*.json",
         "python -m experiments.benchmark_train_step --flagfile=experiments/flags/single_45min.cfg "
         "--tokenizer=artifacts/single_45min_8h_rerun23/tokenizer.model --variants=tf --num_batches=200 "
         "--output_json=artifacts/bench/train_step_corpus_8h.json && python -m experiments.benchmark_train_step "
         "--flagfile=experiments/flags/single_45min.cfg --corpus_dir=artifacts/corpus_8h_flite8 "
         "--tokenizer=artifacts/single_45min_8h_flite8/tokenizer.model --variants=tf --num_batches=200 "
         "--output_json=artifacts/bench/train_step_corpus_8h_flite8.json")
def train_step_corpora(files: dict) -> list[str]:
    rows = ["| corpus | steps | total s | median step s | audio s in the batches | step s per audio s |",
            "|---|---|---|---|---|---|"]
    for stem, d in files.items():
        r = d["variants"]["tf"]
        rows.append(f"| {stem.replace('train_step_', '')} | {r['steps']} | {r['total_s']:.1f} | "
                    f"{r['median_step_s']:.3f} | {r['audio_seconds']:.0f} | {r['total_s'] / r['audio_seconds']:.4f} |")
    rows += ["", "Same cost per batch on both corpora: the flite8 run's fewer steps in 45 minutes (6296 vs the "
             "control's 6979) came from the machine, not the data."]
    return rows


def lm_pruning(files: dict) -> list[str]:
    """Rows of `experiments.lm_pruning` results {stem: JSON}: file size, n-grams and dev
    cross-entropy per pruning threshold, one block per corpus."""
    rows = []
    for stem, d in sorted(files.items()):
        domains = list(d["rows"][0]["nats_per_token"])
        rows += [f"`{stem}` ({d['order']}-gram; cross-entropy on {os.path.basename(d['manifest'])} of "
                 f"{os.path.basename(os.path.dirname(d['manifest']))}):", "",
                 "| min count | gzipped KiB | n-grams | " + " | ".join(f"{dom} nats/token" for dom in domains) + " |",
                 "|---|---|---|" + "---|" * len(domains)]
        rows += [f"| {r['min_count']} | {r['bytes'] / 1024:.0f} | {r['ngrams']} | " +
                 " | ".join(f"{r['nats_per_token'][dom]:.3f}" for dom in domains) + " |" for r in d["rows"]]
        rows.append("")
    return rows[:-1]


section("Shipped token LM: size vs dev cross-entropy under count pruning", "lm_pruning/*.json",
        "python -m experiments.lm_pruning --run_dir=artifacts/single_45min_8h --manifest=artifacts/corpus_8h/dev.jsonl "
        "--lm_train_manifest=artifacts/corpus_8h/train.jsonl --min_counts=1,2,3,5 "
        "--pruning_json=artifacts/lm_pruning/corpus_8h.json; python -m experiments.lm_pruning "
        "--run_dir=artifacts/demo/supernet --manifest=artifacts/demo/corpus/dev.jsonl "
        "--lm_train_manifest=artifacts/demo/corpus/train.jsonl --min_counts=1,2,3,5 "
        "--pruning_json=artifacts/lm_pruning/corpus_2h_demo.json")(lm_pruning)


section("Issue 3, stop 29: the demo's shipped LM under count pruning, fitted on the corpus train text (what make demo "
        "ships) and on the training transcripts (the earlier demo LM), same tokenizer and dev split",
        "lm_pruning_corpus_text/*.json",
        "python -m experiments.make_lm_text --corpus_dir=artifacts/demo/corpus --out=artifacts/demo/corpus/lm_text.txt "
        "&& python -m experiments.lm_pruning --run_dir=artifacts/demo/supernet --manifest=artifacts/demo/corpus/dev.jsonl "
        "--lm_train_text=artifacts/demo/corpus/lm_text.txt --min_counts=1,2,3,5 "
        "--pruning_json=artifacts/lm_pruning_corpus_text/corpus_2h_demo.json && python -m experiments.lm_pruning "
        "--run_dir=artifacts/demo/supernet --manifest=artifacts/demo/corpus/dev.jsonl "
        "--lm_train_manifest=artifacts/demo/corpus/train.jsonl --min_counts=1,2 "
        "--pruning_json=artifacts/lm_pruning_corpus_text/corpus_2h_demo_transcripts.json")(lm_pruning)


def speaker_rows(d) -> list[str]:
    """Per-speaker (TTS voice) WER table of an `evaluate_run` result with `speakers`; [] without."""
    speakers = d.get("speakers") or {}
    if len(speakers) < 2:
        return []
    domains = sorted({dom for r in speakers.values() for dom in r.get("domains", {})})
    rows = ["", "Per voice (none is a training voice; flite base voices recur across splits at other rates and "
            "pitches, see the corpus tables):", "",
            "| voice | utterances | " + " | ".join(f"WER {dom} %" for dom in domains) + " | WER all % | CER all % |",
            "|---|---|" + "---|" * len(domains) + "---|---|"]
    for speaker, r in speakers.items():
        cells = [pct(r.get("domains", {}).get(dom, {}).get("wer")) for dom in domains]
        rows.append(f"| {speaker} | {r['num_utterances']} | " + " | ".join(cells) +
                    f" | {pct(r['wer'])} | {pct(r['cer'])} |")
    return rows


CORPUS_TRAIN = "artifacts/corpus/train.jsonl"
_PROBE_DEFAULTS = {"normalization": "global", "bilstm_stride": 4, "batch_size": 16, "bilstm_batch_norm": False,
                   "bilstm_frontend": "conv1d", "conformer_blocks": 4, "conformer_conv1d_frontend": False,
                   "conformer_conv_batch_norm": False,
                   "warm_start_utterances": 0, "warm_start_steps": 0, "dev_manifest": None,
                   "conformer_ablate": "none", "conformer_input_scale": 1.0,
                   "conformer_subsampling_batch_norm": False}


def probe_command(name: str, settings: dict) -> str:
    """The `experiments.probe_ctc_plateau` command line that reproduces a probe JSON (from its settings)."""
    flags_ = [f"--{k}={settings[k]}" for k in ("encoder", "num_utterances", "steps", "learning_rate",
                                               "train_manifest")]
    flags_ += [f"--{k}={v}" for k, v in settings.items() if k in _PROBE_DEFAULTS and v != _PROBE_DEFAULTS[k]]
    if settings.get("tokenizer"):
        flags_.append(f"--tokenizer={settings['tokenizer']}")
    return f"python -m experiments.probe_ctc_plateau {' '.join(flags_)} --output_json=artifacts/probe/{name}.json"


def _patched(settings: dict) -> bool:
    """A probe of the Conformer's BatchNorm / Conv1D front end made before they were library options."""
    return ("implementation" not in settings and settings["encoder"] == "conformer"
            and (settings.get("conformer_conv_batch_norm") or settings.get("conformer_conv1d_frontend")))


def _variant(settings: dict) -> str:
    changed = [f"{k}={v}" for k, v in settings.items()
               if k in _PROBE_DEFAULTS and k != "dev_manifest" and v != _PROBE_DEFAULTS[k]]
    if settings["train_manifest"] != CORPUS_TRAIN:
        changed.append(f"train_manifest={settings['train_manifest']}")
    return (", ".join(changed) or "-") + (" (patch*)" if _patched(settings) else "")


@section("CTC plateau probes (how many steps to leave the blank plateau)", "probe/plateau_*.json",
         "one experiments.probe_ctc_plateau run per row, listed under the table; the char tokenizer is "
         "train_tokenizer(<artifacts/corpus train texts>, prefix, 40, model_type='char') (the probe's default, "
         "saved next to the first probe as plateau_conformer_32utt_char.model)")
def plateau_probes(runs: dict):
    steps = (100, 200, 300, 400, 500, 600)
    rows = ["| probe | encoder | changed settings | utts | lr | " + " | ".join(f"loss@{s}" for s in steps)
            + " | last point: loss | memorised-set WER % | dev WER % |",
            "|---|---|---|---|---|" + "---|" * len(steps) + "---|---|---|"]
    for name, d in sorted(runs.items()):
        by_step = {p["step"]: p for p in d["curve"]}
        last = d["curve"][-1]
        cells = [f"{by_step[s]['loss']:.2f}" if s in by_step else "" for s in steps]
        rows.append(f"| {name} | {d['settings']['encoder']} | {_variant(d['settings'])} | "
                    f"{d['settings']['num_utterances']} | {d['settings']['learning_rate']} | " + " | ".join(cells)
                    + f" | {last['loss']:.2f} (step {last['step']}) | {pct(last['train_wer'])} | "
                    f"{pct(last.get('dev_wer'))} |")
    rows += ["", "Loss is the CTC loss per label token, averaged over the steps since the previous point (100, or 250-500 "
             "for the long probes; ln 30 = 3.40 "
             "is a uniform guess; ~2.8 is the blank-plus-unigram plateau). A probe whose last point is before its "
             "--steps was stopped early; its JSON holds every point up to then. (patch*): made before commit "
             "7fbf23b by probe-only patches: a Keras BatchNormalization whose statistics included padded frames, "
             "and a Conv1D front end with 'same' padding; the commands below now run the library options "
             "(conv_norm='batch' with padding excluded, subsampling='stack'). Commands:"]
    rows += [f"- `{probe_command(name, d['settings'])}`" for name, d in sorted(runs.items())]
    rows += ["", "The clean corpus of the `_clean` probes (no noise, no reverb) was made with "
             "`tf_todm.data.synthetic.generate_corpus('/tmp/clean_corpus', hours=0.5, seed=0, "
             "config=CorpusConfig(noise_prob=0.0, reverb_prob=0.0))`, with the same char tokenizer."]
    return rows


section("Previous run: same encoder and Adam on the 2-h corpus, no SpecAugment, no dropout "
        "(single_45min.cfg at 76103b2), its own test split",
        "single_45min/eval_test.json",
        "git checkout 76103b2 && python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
        "--out_dir=artifacts/single_45min && python -m experiments.evaluate_run "
        "--run_dir=artifacts/single_45min --manifest=artifacts/corpus/test.jsonl "
        "--output_json=artifacts/single_45min/eval_test.json")(single_model)


section("Same, previous encoder (Conv2D front end, LayerNorm conv module; single_45min.cfg at 752162d)",
        "single_45min_try2/eval_test.json",
        "git checkout 752162d && python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
        "--out_dir=artifacts/single_45min_try2 (12 min, then resumed from ckpt-1200 with --max_train_minutes=33) "
        "&& python -m experiments.evaluate_run --run_dir=artifacts/single_45min_try2 "
        "--manifest=artifacts/corpus/test.jsonl --output_json=artifacts/single_45min_try2/eval_test.json")(single_model)


@section("Issue-3 recipe A/B/C: previous encoder, then BatchNorm + sqrt(D) + stacked front end with "
         "ScaledAdam (stopped at step ~2100) and with Adam (same data order)",
         "compare/single_45min.json",
         "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_try2,"
         "artifacts/single_45min_try3_scaled_adam,artifacts/single_45min "
         "--names=conv2d_layernorm_scaledadam,stack_batchnorm_scaledadam,stack_batchnorm_adam "
         "--output_json=artifacts/compare/single_45min.json")
def recipe_ab(d):
    names = list(d["runs"])
    tags = d["tags"]
    rows = ["| steps | " + " | ".join(f"{t} {n}" for t in tags for n in names) + " |",
            "|---|" + "---|" * (len(tags) * len(names))]
    curves = {(t, n): {p["step"]: p["mean"] for p in d["runs"][n]["curves"][t]} for t in tags for n in names}
    last = max(d["runs"][n]["last_step"] for n in names)
    w = d["window"]
    for step in range(5 * w, last + 1, 5 * w):
        cells = [curves[t, n].get(step) for t in tags for n in names]
        rows.append(f"| {step - w + 1}-{step} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells) + " |")
    return rows + ["", f"{w}-step means every {5 * w} steps of losses per utterance (summed over its tokens); all "
                   "runs read the same batches in the same order, so each row compares like for like (a blank cell: "
                   "that run had stopped). Plot: "
                   "`artifacts/compare/single_45min.png`."]


# The issue-3 training runs compared in the two sections below (compare_runs' run folders and names).
ISSUE3_RUNS = ("python -m experiments.compare_runs --run_dirs=artifacts/single_45min,artifacts/single_45min_8h_specaug,"
               "artifacts/single_45min_8h,artifacts/single_45min_8h_sp --names=corpus2h,"
               "corpus8h_specaug_dropout,corpus8h,corpus8h_speed_perturb_from_epoch3")


@section("Issue-3 data and regularisation: 2-h corpus vs 8-h corpus with SpecAugment + dropout 0.1 (stopped "
         "at step ~4300) vs 8-h corpus without them vs 8-h corpus with speed perturbation from epoch 3", "compare/single_45min_data.json",
         ISSUE3_RUNS + " --window=300 --output_json=artifacts/compare/single_45min_data.json")
def data_ab(d):
    rows = recipe_ab(d)[:-1]
    return rows + [f"{d['window']}-step means every {5 * d['window']} steps of losses per utterance; the 8-h runs "
                   "read other batches than the 2-h run (a bigger corpus), so compare where each curve leaves its "
                   "plateau, not single rows. Plot: `artifacts/compare/single_45min_data.png`."]


@section("Issue-3 runs: dev WER during training (60 dev utterances of each run's corpus, greedy)",
         "compare/single_45min_dev_wer.json",
         ISSUE3_RUNS + " --tags=dev_wer/model --window=600 --output_json=artifacts/compare/single_45min_dev_wer.json")
def dev_wer_curve(d):
    curves = {name: {p["step"]: p["mean"] for p in run["curves"]["dev_wer/model"]} for name, run in d["runs"].items()}
    steps = sorted({step for curve in curves.values() for step in curve})
    rows = ["| run | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for name, curve in curves.items():
        rows.append(f"| {name} | " + " | ".join(pct(curve[s]) if s in curve else "" for s in steps) + " |")
    return rows + ["", "Each cell is the evaluation inside that 600-step window (the last one is the final "
                   "evaluation at the step the 45 minutes ran out)."]


section("Issue-3 runs: SpecAugment switched on from epoch 3 (after the blank plateau; stopped at step 3900) vs "
        "the same run without it (a rerun of the 8-h run above), dev WER during training",
        "compare/single_45min_specaug3_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h,artifacts/single_45min_8h_specaug3 "
        "--names=corpus8h,corpus8h_specaug_from_epoch3 --tags=dev_wer/model --window=600 "
        "--output_json=artifacts/compare/single_45min_specaug3_dev_wer.json")(dev_wer_curve)


section("Issue-3 runs: 256 subword units instead of 64 (stopped at step ~4050) vs the 64-unit rerun keeping 10 "
        "checkpoints vs the same recipe with plain-TF losses (xla_loss=False), dev WER during training",
        "compare/single_45min_vocab_dev_wer.json",
        "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg --vocab_size=256 "
        "--train=max_checkpoints_to_keep=10 --out_dir=artifacts/single_45min_8h_v256 (stopped) && "
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_keep10,"
        "artifacts/single_45min_8h_tfloss,artifacts/single_45min_8h_v256 "
        "--names=vocab64,vocab64_tf_losses,vocab256_stopped --tags=dev_wer/model --window=600 "
        "--output_json=artifacts/compare/single_45min_vocab_dev_wer.json")(dev_wer_curve)


section("Issue-3 runs, stop 23: 8 more flite training voices vs the same recipe on the default 8-h corpus "
        "(stop 22's run and a same-day rerun), dev WER during training (same 60 dev utterances)",
        "compare/single_45min_flite8_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_tfloss,"
        "artifacts/single_45min_8h_rerun23,artifacts/single_45min_8h_flite8 "
        "--names=default_corpus_stop22,default_corpus_stop23,flite8_corpus_stop23 --tags=dev_wer/model --window=600 "
        "--output_json=artifacts/compare/single_45min_flite8_dev_wer.json")(dev_wer_curve)


section("Issue-3 runs, stop 24: VTLP (+-10%) on the flite8 corpus vs the flite8 run without it, dev WER during "
        "training (same 60 dev utterances; compare at equal steps, the runs' speeds differ)",
        "compare/single_45min_vtlp_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_flite8,"
        "artifacts/single_45min_8h_flite8_vtlp --names=flite8_stop23,flite8_vtlp_stop24 --tags=dev_wer/model "
        "--window=600 --output_json=artifacts/compare/single_45min_vtlp_dev_wer.json")(dev_wer_curve)


section("Issue-3 runs, stop 25: the same-day A/B, the flite8 recipe without and with VTLP (+-10%) from epoch 3, dev "
        "WER during training (same 60 dev utterances; the VTLP run was killed at step ~2200 and resumed from step 2100)",
        "compare/single_45min_vtlp_e3_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_flite8_rerun25,"
        "artifacts/single_45min_8h_flite8_vtlp_e3 --names=flite8_stop25,flite8_vtlp_e3_stop25 --tags=dev_wer/model "
        "--window=600 --output_json=artifacts/compare/single_45min_vtlp_e3_dev_wer.json")(dev_wer_curve)


section("Issue-3 runs, stop 26: the recipe with and without the learning rate decayed to 0 over the last 20% of "
        "the 45 minutes, dev WER during training (same 60 dev utterances)",
        "compare/single_45min_decay20_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_flite8_vtlp_e3,"
        "artifacts/single_45min_8h_flite8_vtlp_e3_decay20 --names=no_decay_stop25,decay20_stop26 "
        "--tags=dev_wer/model --window=600 --output_json=artifacts/compare/single_45min_decay20_dev_wer.json"
        )(dev_wer_curve)


section("Issue-3 runs, stop 26: the recipe at peak learning rate 1e-3 and 2e-3, dev WER during training (same 60 dev "
        "utterances)",
        "compare/single_45min_lr2e-3_dev_wer.json",
        "python -m experiments.compare_runs --run_dirs=artifacts/single_45min_8h_flite8_vtlp_e3,"
        "artifacts/single_45min_8h_flite8_vtlp_e3_lr2e-3 --names=lr1e-3_stop25,lr2e-3_stop26 "
        "--tags=dev_wer/model --window=600 --output_json=artifacts/compare/single_45min_lr2e-3_dev_wer.json"
        )(dev_wer_curve)


@section("Optimizer A/B on the issue-3 recipe (first ~1900 steps, same data order)", "probe/optimizer_ab.json",
         "python -m experiments.train_single --flagfile=experiments/flags/single_45min.cfg "
         "--tokenizer=artifacts/single_45min/tokenizer.model --out_dir=/tmp/ab/adam_full --train=optimizer=adam "
         "--train=base_lr=0.002 --train=warmup_batches=500 --train=eval_every_steps=500 (stopped at step ~1900), "
         "against the ScaledAdam run artifacts/single_45min; the JSON holds 100-step means of the TensorBoard "
         "scalars model/ctc and model/rnnt of both runs")
def optimizer_ab(d):
    ctc, rnnt = d["ctc_loss_per_utterance"], d["rnnt_loss_per_utterance"]
    names = list(ctc)
    rows = ["| steps | " + " | ".join(f"CTC {n}" for n in names) + " | " + " | ".join(f"RNN-T {n}" for n in names)
            + " |", "|---|" + "---|" * (2 * len(names))]
    for i in range(min(len(v) for v in ctc.values())):
        rows.append(f"| {100 * i}-{100 * (i + 1)} | " + " | ".join(f"{ctc[n][i]:.1f}" for n in names) + " | "
                    + " | ".join(f"{rnnt[n][i]:.1f}" for n in names) + " |")
    return rows + ["", "Losses are per utterance (summed over its tokens), so only the trend is comparable: the "
                   "CTC loss stays on its plateau with either optimizer."]


def junit_summary(path: str) -> dict:
    """{"tests", "failures", "errors", "skipped", "seconds", "cases": [names]} of a JUnit XML file."""
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = [c.get("name") for c in suite.iter("testcase")]
    return {"tests": int(suite.get("tests")), "failures": int(suite.get("failures")),
            "errors": int(suite.get("errors")), "skipped": int(suite.get("skipped")),
            "seconds": float(suite.get("time")), "cases": cases}


RELIABILITY_RUNS = {
    "fuzz_slow.xml": ("python -m pytest tests/test_fuzz.py -q --junitxml=artifacts/reliability/fuzz_slow.xml",
                      "fast properties at 50 examples, the *_500 ones at 500"),
    "bad_input.xml": ("python -m pytest tests/test_bad_input.py -n 2 -q --junitxml=artifacts/reliability/bad_input.xml",
                      "fast and slow groups, one CLI subprocess per case"),
    "crash_slow.xml": ("python -m pytest tests/test_crash_safety.py -m slow -q "
                       "--junitxml=artifacts/reliability/crash_slow.xml",
                       "SIGKILL x3 then identical weights; multi-worker kill/restart"),
}


def reliability_rows(previous: dict | None = None) -> list[str]:
    """The reliability table; a run whose XML is missing keeps its row from `previous`
    ({run: row}, `previous_reliability_rows`) if that row has results."""
    rows = ["| run | command | what | tests | failed | skipped | seconds |", "|---|---|---|---|---|---|---|"]
    for name, (command, note) in RELIABILITY_RUNS.items():
        path = os.path.join(FLAGS.artifacts, "reliability", name)
        if not os.path.exists(path):
            kept = (previous or {}).get(name)
            if kept and "not run in this workspace" not in kept:
                rows.append(kept)
            else:
                rows.append(f"| {name} | `{command}` | {note} | not run in this workspace | | | |")
            continue
        r = junit_summary(path)
        rows.append(f"| {name} | `{command}` | {note} | {r['tests']} | {r['failures'] + r['errors']} | "
                    f"{r['skipped']} | {r['seconds']:.0f} |")
    return rows


@section("Quantization-aware fine-tuning vs float fine-tuning (tiny model, full int8)", "bench/qat.json",
         "python -m experiments.benchmark_qat --seeds=0,1 --train_steps=300 --finetune_steps=100 "
         "--out=artifacts/bench/qat.json")
def qat(d):
    rows = ["| seed | utterances | encoder rel. L2 (QAT / control) | joiner logit RMSE (QAT / control) | "
            "token agreement (QAT / control) |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        q, c = r["arms"]["qat"], r["arms"]["control"]
        for split in ("train_utts", "held_out_utts"):
            rows.append(f"| {r['seed']} | {split.replace('_utts', '')} | {q[split]['encoder_rel_l2']:.4f} / "
                        f"{c[split]['encoder_rel_l2']:.4f} | {q[split]['joiner_logit_rmse']:.4f} / "
                        f"{c[split]['joiner_logit_rmse']:.4f} | {q[split]['token_agreement']:.2f} / "
                        f"{c[split]['token_agreement']:.2f} |")
    rows.append("")
    rows.append("Errors are full-int8 TFLite vs the same model in float. No consistent QAT benefit at this "
                "toy scale (two seeds; full-int8 error is already ~6%).")
    return rows


@section("Search vs best-of-random (toy WER surface)", "search_bench/toy.json",
         "python -m experiments.benchmark_search --evaluator=toy --out=artifacts/search_bench/toy.json "
         "--seeds=0,1,2,3,4")
def search(d):
    rows = ["| budget | seed | search WER | random WER | search evals | random evals | search >= random |",
            "|---|---|---|---|---|---|---|"]
    wins = 0
    for r in d["rows"]:
        wins += bool(r["search_at_least_as_good"])
        rows.append(f"| {r['budget']} | {r['seed']} | {pct(r['search']['best_wer'])} | {pct(r['random']['best_wer'])} | "
                    f"{r['search']['evaluations']} | {r['random']['evaluations']} | {r['search_at_least_as_good']} |")
    rows += ["", f"Search at least as good as the best of {d['random_samples']} random feasible subnets in "
             f"**{wins} of {len(d['rows'])}** runs, with fewer evaluations."]
    return rows


@section("Search vs best-of-random on the demo's supernet (real dev WER, BatchNorm recalibrated per subnet)",
         "search_bench/demo_supernet*.json",
         "python -m experiments.benchmark_search --evaluator=supernet --checkpoint=artifacts/demo/supernet "
         "--dev_manifest=artifacts/demo/corpus/dev.jsonl --calibration_manifest=artifacts/demo/corpus/train.jsonl "
         "--budgets=experiments/flags/search_bench_budgets.json --max_dev_utterances=100 --seeds=0 "
         "--out=artifacts/search_bench/demo_supernet.json (and --seeds=1 --out=artifacts/search_bench/"
         "demo_supernet_seed1.json); two-fidelity: the same with --seeds=0,1 --screen_dev_batches=2 "
         "--screen_calibration_batches=2 --finalists=4 --out=artifacts/search_bench/demo_supernet_screened.json; "
         "three budgets: --budgets=experiments/flags/demo_budgets.json --latency_cache=artifacts/demo/"
         "latency_cache.json --seeds=0,1 with those screening flags (--out=artifacts/search_bench/"
         "demo_supernet_screened_3budgets.json) and with --screen_dev_batches=4 --screen_calibration_batches=4 "
         "--finalists=6 (--out=artifacts/search_bench/demo_supernet_screened_3budgets_d4c4f6.json)")
def search_real(runs: dict):
    rows = ["| budget | seed | search | search dev WER % | random dev WER % | search calls | random calls | "
            "search wall s | random wall s | time ratio | search >= random |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, d in sorted(runs.items()):
        screened = bool(d.get("screen_dev_batches"))
        mode = (f"two-fidelity ({d['screen_dev_batches']} dev + {d['screen_calibration_batches'] or 'all'} BN "
                f"batches, {d['finalists']} finalists)" if screened else "single fidelity")
        for r in d["rows"]:
            s_, q = r["search"], r["random"]
            calls = (f"{s_['evaluations']} full + {s_['screenings']} screened" if screened
                     else f"{s_['evaluations']} full")
            rows.append(f"| {r['budget']} | {r['seed']} | {mode} | {pct(s_['best_wer'])} | {pct(q['best_wer'])} | "
                        f"{calls} | {q['evaluations']} full | {s_['wall_time_s']:.0f} | "
                        f"{q['wall_time_s']:.0f} | {r['time_ratio_search_over_random']:.2f} | "
                        f"{r['search_at_least_as_good']} |")
    return rows + ["", "The supernet is the demo's (2499 steps, dev WER 82% largest / 92% smallest), so WER "
                   "differences between subnets are small; one row per (budget, seed). Random subnets are "
                   "always scored on the whole dev set (100 utterances, 8 BatchNorm batches); the reported "
                   "search WER is always a whole-dev-set WER."]


@section("Search vs best-of-random with both picks re-scored on held-out speech (demo supernet, test split)",
         "search_bench/heldout_*.json",
         "python -m experiments.benchmark_search --evaluator=supernet --checkpoint=artifacts/demo/supernet "
         "--dev_manifest=artifacts/demo/corpus/dev.jsonl --calibration_manifest=artifacts/demo/corpus/train.jsonl "
         "--heldout_manifest=artifacts/demo/corpus/test.jsonl --budgets=experiments/flags/demo_budgets.json "
         "--latency_cache=artifacts/demo/latency_cache.json --max_dev_utterances=100 --seeds=0,1,2 "
         "--screen_dev_batches=2 --screen_calibration_batches=2 --finalists=4 "
         "--out=artifacts/search_bench/heldout_d2c2f4.json (and with --seeds=9,10,11 "
         "--out=artifacts/search_bench/heldout_d2c2f4_seeds91011.json: the same random draws as the capped "
         "predictor run on those seeds); then the same with --finalists=10 "
         "--out=artifacts/search_bench/heldout_d2c2f10.json (chosen after seeing the first run); "
         "predictor-guided: the same without the three screening flags, with --predictor_initial=16 "
         "--predictor_rounds=3 --predictor_per_round=6 --out=artifacts/search_bench/heldout_predictor_i16r3p6.json; "
         "and that with --seeds=3,4,5 (seeds no earlier run used) "
         "--out=artifacts/search_bench/heldout_predictor_i16r3p6_seeds345.json; depth-stratified: that with "
         "--seeds=6,7,8 --predictor_stratify_depth "
         "--out=artifacts/search_bench/heldout_predictor_i16r3p6_depth_seeds678.json; with the cost cap: that "
         "with --seeds=9,10,11 --predictor_cost_cap=0.75 "
         "--out=artifacts/search_bench/heldout_predictor_depth_cap075_seeds91011.json, and that with "
         "--seeds=12,13,14 --out=artifacts/search_bench/heldout_predictor_depth_cap075_seeds121314.json; "
         "per-position predictor features: the seeds 9-11 capped run with --predictor_per_position "
         "--out=artifacts/search_bench/heldout_predictor_depth_cap075_perpos_seeds91011.json")
def search_heldout(runs: dict):
    rows = ["| run | budget | seed | search dev WER % | random dev WER % | search test WER % | random test WER % | "
            "search wall s | random wall s | time ratio | search >= random (dev) | search >= random (test) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for name, d in sorted(runs.items()):
        for r in d["rows"]:
            s_, q = r["search"], r["random"]
            rows.append(f"| {name} | {r['budget']} | {r['seed']} | {pct(s_['best_wer'])} | {pct(q['best_wer'])} | "
                        f"{pct(s_['heldout_wer'])} | {pct(q['heldout_wer'])} | {s_['wall_time_s']:.0f} | "
                        f"{q['wall_time_s']:.0f} | {r['time_ratio_search_over_random']:.2f} | "
                        f"{r['search_at_least_as_good']} | {r['search_at_least_as_good_heldout']} |")
        dev_wins, test_wins, faster = verdict_counts(d["rows"])
        ratios = [r["time_ratio_search_over_random"] for r in d["rows"]]
        summary.append(f"- {name}: at least as good in **{dev_wins} of {len(d['rows'])}** runs on dev, "
                       f"**{test_wins} of {len(d['rows'])}** on test; faster in **{faster} of {len(d['rows'])}** "
                       f"(time ratio {min(ratios):.2f}-{max(ratios):.2f}).")
        caps = [r["search"]["predictor"]["cost"] for r in d["rows"] if "cost" in r["search"].get("predictor", {})]
        if caps:
            summary[-1] += (f" Cost cap: stopped by it in {sum(c['stopped_by_cap'] for c in caps)} of {len(caps)} "
                            f"runs, after {min(r['search']['evaluations'] for r in d['rows'])}-"
                            f"{max(r['search']['evaluations'] for r in d['rows'])} evaluations.")
        loo = [f"{r['budget']} {r['search']['predictor']['leave_one_out_rank_correlation']:.2f}"
               for r in d["rows"] if "leave_one_out_rank_correlation" in r["search"].get("predictor", {})]
        if loo:
            summary[-1] += (" WER predictor's leave-one-out rank correlation with the whole-dev WER over each "
                            "run's own evaluations: " + ", ".join(loo) + ".")
    return rows + ["", "Search vs the best of 50 random feasible subnets, on the dev utterances both selected on "
                   "and on the test split (unseen voices and sentences, which neither selected on). Each "
                   "method's pick is its lowest whole-dev WER (a screened search's: over its finalists)."] + \
        [""] + summary + pooled_by_setting(runs)


def verdict_counts(rows: list[dict]) -> tuple[int, int, int]:
    """Benchmark rows in which the search was at least as good on dev, on the held-out split, and
    faster than random."""
    return (sum(bool(r["search_at_least_as_good"]) for r in rows),
            sum(bool(r["search_at_least_as_good_heldout"]) for r in rows),
            sum(r["time_ratio_search_over_random"] < 1.0 for r in rows))


def pooled_by_setting(runs: dict) -> list[str]:
    """One line per search setting that several run files share (same predictor and screening
    settings, other seeds): runs won on dev and test, runs faster, and per budget the mean WER gap
    (random minus search, points; positive favours the search)."""
    groups: dict = {}
    for name, d in sorted(runs.items()):
        predictor = {k: v for k, v in (d.get("predictor") or {}).items()
                     if not (k == "per_position" and v is False)} or d.get("predictor")  # runs before the flag
        key = json.dumps([predictor, d.get("screen_dev_batches"), d.get("finalists")], sort_keys=True)
        groups.setdefault(key, []).append((name, d))
    lines = []
    for members in groups.values():
        if len(members) < 2:
            continue
        rows = [r for _, d in members for r in d["rows"]]
        gaps = []
        for budget in dict.fromkeys(r["budget"] for r in rows):
            mine = [r for r in rows if r["budget"] == budget]
            dev = 100 * sum(r["random"]["best_wer"] - r["search"]["best_wer"] for r in mine) / len(mine)
            test = 100 * sum(r["random"]["heldout_wer"] - r["search"]["heldout_wer"] for r in mine) / len(mine)
            gaps.append(f"{budget} {dev:+.2f} / {test:+.2f}")
        dev_wins, test_wins, faster = verdict_counts(rows)
        lines.append(f"- pooled {' + '.join(n for n, _ in members)} (same setting): at least as good in "
                     f"**{dev_wins} of {len(rows)}** on dev, **{test_wins} of {len(rows)}** on test; "
                     f"faster in **{faster} of {len(rows)}**; "
                     f"mean WER gap per budget, dev / test points (positive: search better): " + ", ".join(gaps) + ".")
    return lines


@section("Evaluation cost model of the predictor search's cost cap (demo supernet, benchmark sides)",
         "search_bench/evaluation_cost_fit.json",
         "python -m experiments.fit_evaluation_cost --bench_json=artifacts/search_bench/"
         "heldout_predictor_i16r3p6_seeds345.json,artifacts/search_bench/heldout_predictor_i16r3p6_depth_seeds678.json "
         "--cost_fit_json=artifacts/search_bench/evaluation_cost_fit.json")
def evaluation_cost_fit(d):
    f = d["fit"]
    return ["| points | s per evaluation | s per encoder block | overhead (blocks) | R^2 | largest error | "
            "time-ratio error (max / mean) |", "|---|---|---|---|---|---|---|",
            f"| {f['points']} | {f['seconds_per_evaluation']:.3f} | {f['seconds_per_block']:.3f} | "
            f"{f['overhead_blocks']:.2f} | {f['r2']:.3f} | {100 * f['max_relative_error']:.0f}% | "
            f"{d['max_ratio_error']:.3f} / {d['mean_ratio_error']:.3f} |", "",
            "Each point is one side (search or random) of one benchmark row: its evaluator seconds against its "
            "number of whole-dev evaluations and its total encoder blocks. The fit's overhead is "
            "`predictor_search.EVALUATION_OVERHEAD_BLOCKS` (1.7); `--predictor_cost_cap` spends in these units. "
            f"Widths do not enter: a fit on parameters instead of blocks explains less (R^2 "
            f"{f['r2_params_instead']:.3f})."]


@section("Ranking subnets inside one budget (demo supernet): screening views, held-out speech, WER predictor",
         "search_bench/fidelity_in_budget.json",
         "python -m experiments.probe_search_fidelity --checkpoint=artifacts/demo/supernet "
         "--dev_manifest=artifacts/demo/corpus/dev.jsonl --calibration_manifest=artifacts/demo/corpus/train.jsonl "
         "--heldout_manifest=artifacts/demo/corpus/test.jsonl --budgets=experiments/flags/demo_budgets.json "
         "--latency_cache=artifacts/demo/latency_cache.json --max_dev_utterances=100 --subnets=30 "
         "--views=2:2,4:4 --out=artifacts/search_bench/fidelity_in_budget.json")
def fidelity_in_budget(d):
    rows = ["| budget | subnets | whole-dev WER % (min-max) | ranking | s per evaluation | rank correlation with whole-dev WER |",
            "|---|---|---|---|---|---|"]
    names = {"full": "whole dev set (the reference)", "heldout": "test split (whole)",
             "2:2": "screen: 2 dev + 2 BN batches",
             "4:4": "screen: 4 dev + 4 BN batches"}
    for budget, g in d["groups"].items():
        full = g["views"]["full"]["wers"]
        for view, v in g["views"].items():
            rows.append(f"| {budget} | {len(full)} | {pct(min(full))}-{pct(max(full))} | {names.get(view, view)} | "
                        f"{v['seconds_per_evaluation']:.2f} | {v['rank_correlation_with_full']:.2f} |")
    return rows + ["", "Random feasible subnets drawn inside each budget (seed 0, as the random baseline draws "
                   "them). The whole dev set is 100 utterances with 8 BatchNorm re-estimation batches. The "
                   "test-split row measures how far the dev set's own ranking holds on speech no selection saw."]


@section("Fine-tuning an extracted subnet (issue 5): demo phone_low subnet, float32 TFLite, test split",
         "finetune_effect/ft300/test_eval.json",
         "bash: for n in 0 300: python -m experiments.export --checkpoint=artifacts/demo/supernet "
         "--subnet_json=\"$(cat phone_low_subnet.json)\" --train_manifest=artifacts/demo/corpus/train.jsonl "
         "--mode=float32 --finetune_steps=$n --qat_utterances=1600 --out_dir=artifacts/finetune_effect/ft$n "
         "--name=phone_low; python -m experiments.evaluate_tflite --model=artifacts/finetune_effect/ft$n/"
         "phone_low.float32.tflite --manifest=artifacts/demo/corpus/test.jsonl --output_json=artifacts/"
         "finetune_effect/ft$n/test_eval.json --measure_memory=false (phone_low_subnet.json: the phone_low "
         "config of artifacts/demo/search.json)")
def finetune_effect(ft300):
    rows = ["| fine-tuning steps | test WER % | command % | open % | fine-tuning s | loss first / last |",
            "|---|---|---|---|---|---|"]
    for steps in (0, 300):
        base = os.path.join(FLAGS.artifacts, f"finetune_effect/ft{steps}")
        e = ft300 if steps == 300 else load_json(os.path.join(base, "test_eval.json"))
        summary = load_json(os.path.join(base, "export_summary.json")) or {}
        if e is None:
            continue
        ft = summary.get("finetune") or {}
        dom = e.get("wer_by_domain", {})
        losses = f"{ft['loss_first']:.1f} / {ft['loss_last']:.1f}" if ft else "-"
        rows.append(f"| {steps} | {pct(e['wer'])} | {pct(dom.get('command'))} | {pct(dom.get('open'))} | "
                    f"{ft.get('seconds', 0):.0f} | {losses} |")
    return rows + ["", "Fine-tuning: Adam 3e-4, batches of 8 of the first 1600 training utterances, exact RNN-T "
                   "loss (per utterance). Both rows re-estimate the subnet's BatchNorm statistics from the "
                   "training manifest; the 0-step row reproduces the demo's phone_low.float32 WER exactly."]


@section("Train once vs train three (toy scale only)", "benchmark_train_once_tiny/result.json",
         "python -m experiments.benchmark_train_once --flagfile=experiments/flags/supernet_tiny.cfg "
         "--vocab_size=40 --out_dir=/tmp/trh/bench --corpus_dir=/tmp/trh/corpus --train=num_epochs=3 "
         "--train=checkpoint_every_steps=0 --test_max_utterances=12")
def train_once(d):
    return ["```", json.dumps({k: v for k, v in d.items() if not isinstance(v, (list, dict))}, indent=1)[:1500],
            "```", "At this scale no model learns (WER ~100%); the ratio is dominated by graph tracing."]


def train_once_real(d):
    ratio = d["time_ratio_supernet_over_sum_alone"]
    rows = [f"Training set {d['train_hours']:.2f} h, {d['train']['num_epochs']} epochs for every run; the supernet's "
            f"largest subnet trains alone for the first {d['train'].get('largest_only_steps', 0)} steps; test split "
            f"({d['test_utterances']} utterances, unseen voices and sentences), greedy.", "",
            "| | wall time s | steps |", "|---|---|---|",
            f"| supernet (one run, serves all sizes) | {d['supernet_seconds']:.0f} | {d['supernet_steps']} |"]
    rows += [f"| {r['size']} alone | {r['alone_seconds']:.0f} | {r['alone_steps']} |" for r in d["sizes"]]
    rows += [f"| sum alone | {d['alone_seconds_total']:.0f} | |", "",
             f"Time ratio supernet / sum alone: **{ratio:.2f}** (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'}).",
             "", "| size | params | test WER supernet % | test WER alone % | relative (supernet / alone - 1) | "
             "target (<= +3%) |", "|---|---|---|---|---|---|"]
    for r in d["sizes"]:
        rel = r["wer_supernet"] / r["wer_alone"] - 1 if r["wer_alone"] else float("nan")
        rows.append(f"| {r['size']} | {r['params']} | {pct(r['wer_supernet'])} | {pct(r['wer_alone'])} | "
                    f"{100 * rel:+.1f}% | {'met' if rel <= 0.03 else 'NOT met'} |")
    out_dir = re.search(r"--out_dir=(\S+)", d.get("command", ""))
    rows += ["", f"Plot: `{out_dir.group(1) if out_dir else 'artifacts/train_once'}/wer_vs_params.png` (WER vs "
             "parameters, supernet subnets vs models trained alone)."]
    return rows


section("Train once vs train three on the default corpus (issue 4 evidence)", "train_once/result.json",
        "python -m experiments.benchmark_train_once --flagfile=experiments/flags/train_once.cfg "
        "--out_dir=artifacts/train_once")(train_once_real)

section("Train once vs train three at the 0.5 time target (stop 27): the same benchmark with the largest subnet "
        "trained alone for the first 2100 of the 2268 steps (the sandwich runs the last 168), chosen by arithmetic "
        "from stop 16's step costs to bring the time ratio under 0.5", "train_once_lo2100/result.json",
        "python -m experiments.benchmark_train_once --flagfile=experiments/flags/train_once.cfg "
        "--train=largest_only_steps=2100 --out_dir=artifacts/train_once_lo2100")(train_once_real)

@section("Why the two issue-4 targets exclude each other (stop 28): seconds per training step in the stop-27 "
         "benchmark, from its TensorBoard rate scalars", "train_once_lo2100/result.json",
         "python -m experiments.workspace_results (reads perf/steps_per_second from the tb/ folders of "
         "artifacts/train_once_lo2100/{supernet,alone_largest,alone_middle,alone_smallest})")
def train_once_step_costs(d):
    """Median seconds per step of each phase, and the largest share of sandwich steps that the 0.5
    time target leaves: f * sandwich + (1 - f) * largest_only <= 0.5 * (sum of the three alone)."""
    from experiments.compare_runs import read_scalars
    base = os.path.join(FLAGS.artifacts, "train_once_lo2100")
    tag = "perf/steps_per_second"
    first_sandwich = d["train"]["largest_only_steps"]
    log_every = d["train"]["log_every_steps"]

    def seconds_per_step(run, keep):
        rates = read_scalars(os.path.join(base, run), [tag])[tag]
        windows = [1.0 / v for step, v in rates.items() if keep(step) and v > 0]
        return statistics.median(windows), len(windows)

    # The first window of each phase holds its tf.function trace; it is left out.
    phases = {
        "supernet, largest subnet alone": seconds_per_step(
            "supernet", lambda s: log_every < s <= first_sandwich),
        "supernet, sandwich (largest + 1 random + smallest)": seconds_per_step(
            "supernet", lambda s: s > first_sandwich + log_every),
    }
    for size in ("largest", "middle", "smallest"):
        phases[f"{size} trained alone"] = seconds_per_step(f"alone_{size}", lambda s: s > log_every)
    rows = ["| phase | median s per step | log windows |", "|---|---|---|"]
    rows += [f"| {name} | {sec:.3f} | {n} |" for name, (sec, n) in phases.items()]
    alone = sum(phases[f"{size} trained alone"][0] for size in ("largest", "middle", "smallest"))
    largest_only = phases["supernet, largest subnet alone"][0]
    sandwich = phases["supernet, sandwich (largest + 1 random + smallest)"][0]
    share = (0.5 * alone - largest_only) / (sandwich - largest_only)
    steps = d["supernet_steps"]
    rows += ["", f"Sum of the three trained alone: {alone:.3f} s per step; a sandwich step costs "
             f"{sandwich / alone:.2f} of it. Share of sandwich steps the 0.5 time target allows, before "
             f"tracing, start-up and checkpoint costs: f <= (0.5 x {alone:.3f} - {largest_only:.3f}) / "
             f"({sandwich:.3f} - {largest_only:.3f}) = **{share:.2f}**, i.e. at most {share * steps:.0f} of the "
             f"{steps} steps train the middle and smallest subnets, against {steps} steps for each model "
             f"trained alone. Rates are {log_every}-step window means logged by the trainer."]
    return rows


def bench_report(d):
    """The comparison report of `experiments.benchmark` (`report.json`): one row per method and
    size, then the representation-transfer and KD comparisons against their targets."""
    data = d["data"]
    rows = [f"Data: {data['source']}, {data['train_hours']:.2f} h training speech; test: "
            f"{data['test_utterances']} utterances of the test split (unseen voices and sentences), greedy.", "",
            "| method | size | params | int8 bytes | test WER float % | command % | open % | test WER int8 % | "
            "RTF float | RTF int8 | train s | epochs |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    num = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in d["rows"]:
        dom = r.get("test_wer_float_by_domain") or {}
        rows.append(f"| {r['method']} | {r['size']} | {r['params']} | {num(r.get('int8_bytes'), 'd')} | "
                    f"{pct(r['test_wer_float'])} | {pct(dom.get('command'))} | {pct(dom.get('open'))} | "
                    f"{pct(r.get('test_wer_int8'))} | {num(r.get('rtf_float'), '.4f')} | "
                    f"{num(r.get('rtf_int8'), '.4f')} | {num(r.get('train_seconds'), '.0f')} | {r.get('epochs')} |")
    for c in d["comparisons"].get("repr_transfer") or []:
        eq = c["dev_wer_at_equal_ctc_epochs"]
        verdict = lambda met: "not assessed" if met is None else ("met" if met else "NOT met")  # noqa: E731
        rows += ["", f"Representation transfer vs CTC from scratch, {c['size']} ({c['params']} params):",
                 f"- scratch: final dev WER {pct(c['scratch_final_dev_wer'])} after {c['scratch_epochs']} epochs "
                 f"({c['scratch_train_seconds']:.0f} s).",
                 (f"- transfer reaches it after {num(c['repr_total_epochs_to_reach'], 'g')} epochs in all "
                  f"(stage 1 + {num(c['repr_stage2_epochs_to_reach'], 'g')} of stage 2): "
                  f"{num(c['speedup_epochs_total'], '.2f')}x fewer epochs "
                  f"({num(c['speedup_epochs_stage2'], '.2f')}x counting stage 2 only), "
                  f"{num(c['speedup_wall_time'], '.2f')}x less wall time" if c['repr_total_epochs_to_reach']
                  else "- transfer does not reach it within its stage-2 epochs")
                 + f"; target >= 3x fewer epochs: {verdict(c['target_speedup_3x_met'])}.",
                 f"- dev WER after {eq['epochs']} CTC epochs: transfer {pct(eq['repr_transfer'])} vs scratch "
                 f"{pct(eq['scratch'])}, relative {num(eq['relative_improvement'] and 100 * eq['relative_improvement'], '+.1f')}%"
                 f" better; target >= 10%: {verdict(c['target_wer_10pct_met'])}.",
                 f"- test WER: transfer {pct(c['test_wer']['repr_transfer'])} vs scratch {pct(c['test_wer']['scratch'])}."]
        if c.get("note"):
            rows.append(f"- {c['note']}")
    for r in d["rows"]:
        history = r.get("stage2_history") or r.get("history")
        if history:
            rows.append(f"- dev WER per epoch, {r['method']} {r['size']}: "
                        + ", ".join(f"{h['epoch']:g}: {pct(h['dev_wer'])}" for h in history))
    kd = d["comparisons"].get("kd") or {}
    for method in ("progressive_kd", "one_shot_kd", "individual", "supernet"):
        if method in kd:
            k = kd[method]
            rows.append(f"- KD, {method} at {kd['final_size']}: {100 * k['param_reduction']:.1f}% fewer params than the "
                        f"teacher, test WER {pct(k['test_wer'])} vs teacher {pct(kd['teacher_test_wer'])}; target "
                        f"(>= 60% fewer, <= 5% relative worse): {k['target_met']}")
    return rows


section("The one comparison report (make bench)", "bench/report.json",
        "make bench (= python -m experiments.benchmark --config=experiments/flags/bench.cfg)")(bench_report)
section("Issue 7 at issue 3's scale: representation transfer from the 8-h model vs CTC from scratch",
        "bench_repr_8h/report.json",
        "python -m experiments.benchmark --config=experiments/flags/bench_repr_8h.cfg "
        "--out_dir=artifacts/bench_repr_8h")(bench_report)
section("Issue 7, stop 28: the same representation transfer with issue 3's recipe run (flite8 corpus, VTLP from "
        "epoch 3, newest 5 checkpoints averaged) as the frozen reference, on its flite8 corpus",
        "bench_repr_8h_flite8/report.json",
        "python -m experiments.benchmark --config=experiments/flags/bench_repr_8h_flite8.cfg "
        "--out_dir=artifacts/bench_repr_8h_flite8")(bench_report)
section("Issue 7, stop 28: the same with three epochs of stage 1 (representation matching) instead of one (run "
        "after seeing the one-epoch result: its head start shrank every CTC epoch); scratch is rerun beside it",
        "bench_repr_8h_flite8_s1e3/report.json",
        "python -m experiments.benchmark --config=experiments/flags/bench_repr_8h_flite8.cfg --stage1_epochs=3 "
        "--out_dir=artifacts/bench_repr_8h_flite8_s1e3")(bench_report)
section("Issue 7, stop 29: the three-epoch stage 1 confirmed on another seed (model init and data order of both "
        "students; declared before it ran: the 10% target is judged at equal CTC epochs, as above)",
        "bench_repr_8h_flite8_s1e3_seed1/report.json",
        "python -m experiments.benchmark --config=experiments/flags/bench_repr_8h_flite8.cfg --stage1_epochs=3 "
        "--train=seed=1 --out_dir=artifacts/bench_repr_8h_flite8_s1e3_seed1")(bench_report)


@section("Issue 7 at issue 3's scale: progressive distillation of the 8-h model vs one-shot KD vs scratch",
         "progressive_kd_8h/result.json",
         "python -m experiments.train_progressive_kd --flagfile=experiments/flags/progressive_kd_8h.cfg "
         "--out_dir=artifacts/progressive_kd_8h")
def progressive_kd(d):
    """`experiments.train_progressive_kd`'s result.json: teacher, every stage, and the baselines
    against the issue's target (>= 60% fewer parameters, <= 5% relative test-WER degradation)."""
    teacher = d["teacher"]
    t_wer, t_params = teacher["test"].get("wer"), teacher["params"]
    rows = ["Test split of the 8-h corpus (unseen voices and sentences), greedy, float Keras.", "",
            "| model | params | fewer params than teacher | test WER % | command % | open % | "
            "relative WER vs teacher | train s | target |", "|---|---|---|---|---|---|---|---|---|"]
    named = [("teacher", teacher)] + [(f"stage {k}", r) for k, r in enumerate(d["stages"], 1)]
    named += [(n, d[n]) for n in ("one_shot", "scratch") if n in d]
    final = len(d["stages"])
    for name, r in named:
        dom = r["test"].get("wer_by_domain") or {}
        wer, reduction = r["test"].get("wer"), 1 - r["params"] / t_params
        rel = None if wer is None or not t_wer else wer / t_wer - 1
        target = "-"
        if name in (f"stage {final}", "one_shot", "scratch") and rel is not None:
            target = "met" if reduction >= 0.6 and rel <= 0.05 else "NOT met"
        rows.append(f"| {name} | {r['params']} | {100 * reduction:.1f}% | {pct(wer)} | {pct(dom.get('command'))} | "
                    f"{pct(dom.get('open'))} | {'-' if rel is None else f'{100 * rel:+.1f}%'} | "
                    f"{'-' if r.get('train_seconds') is None else format(r['train_seconds'], '.0f')} | {target} |")
    inits = ", ".join(f"stage {k}: {r['init']}" for k, r in enumerate(d["stages"], 1))
    rows += ["", f"Student initialisation: {inits}. The baselines train for as many epochs as all stages together."]
    return rows


section("Issue 7, stop 29: the same progressive distillation with issue 3's recipe run as the first teacher "
        "(newest 5 checkpoints averaged), on its flite8 corpus",
        "progressive_kd_8h_flite8/result.json",
        "python -m experiments.train_progressive_kd --flagfile=experiments/flags/progressive_kd_8h_flite8.cfg "
        "--out_dir=artifacts/progressive_kd_8h_flite8")(progressive_kd)


@section("make demo (the main job)", "demo/report.json",
         "make demo (= python -m experiments.demo --out_dir=artifacts/demo --flagfile=experiments/flags/demo.cfg)")
def demo(d):
    rows = ["| model | target | params | .tflite KiB | test WER % | command % | open % | RTF (1 thread) | "
            "chunk p50 ms | chunk p90 ms | peak MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in d["models"]:
        dom = m.get("wer_per_domain") or {}
        mem = m.get("peak_memory_bytes")
        rows.append(f"| {m['name']} | {m['target']} | {m['params']} | {m['size_bytes'] / 1024:.0f} | {pct(m['wer'])} | "
                    f"{pct(dom.get('command'))} | {pct(dom.get('open'))} | {m['rtf']:.4f} | "
                    f"{m['latency_ms_median']:.1f} | {m['latency_ms_p90']:.1f} | "
                    f"{'-' if mem is None else f'{mem / 2**20:.1f}'} |")
    by = {}
    for m in d["models"]:
        if m.get("decoding", "greedy") == "greedy":
            by.setdefault(m["budget"], {})[m["quantization"]] = m
    rows.append("")
    for budget, q in by.items():
        if "float32" in q and "full_int8" in q:
            f, i = q["float32"], q["full_int8"]
            ratio = "-" if not f["wer"] else f"{i['wer'] / f['wer']:.3f}"
            rows.append(f"- {budget}: int8/float32 WER ratio {ratio} (target <= 1.05), int8/float32 bytes "
                        f"{i['size_bytes'] / f['size_bytes']:.3f} (target <= 0.3)")
            for m in (f, i):
                b = _size_breakdown(m)
                if b:
                    parts = [f"{k} constants {v / 1024:.0f}" for k, v in b["constants"].items() if v >= 1024]
                    rows.append(f"  - {m['name']} KiB: " + ", ".join(parts) + f", quantization scales + zero points "
                                f"{b['quantization_params'] / 1024:.0f}, other (graph, tensor tables) "
                                f"{b['other'] / 1024:.0f}; total {b['total'] / 1024:.0f}")
        lm_rows = [m for m in d["models"] if m["budget"] == budget and m.get("decoding", "greedy") != "greedy"]
        if lm_rows and "full_int8" in q:
            lm_int8 = next((m for m in lm_rows if m["quantization"] == "full_int8"), None)
            side = load_json(os.path.join(FLAGS.artifacts, "demo", q["full_int8"]["sidecar"])) or {}
            lm = side.get("lm") or {}
            if lm_int8 is not None:
                fitted = d.get("lm") or {}
                fitted_on = (f"fitted on the {fitted['fitted_on']}, {fitted['sentences']} sentences; "
                             if fitted.get("fitted_on") else "")
                rows.append(f"  - with the shipped token LM ({fitted_on}{lm_int8['decoding']}; "
                            f"{lm.get('order', '?')}-gram, weight {lm.get('weight', '?')}, bonus "
                            f"{lm.get('length_bonus', '?')}, {lm.get('size_bytes', 0) / 1024:.0f} KiB gzipped): "
                            f"full_int8 WER {pct(q['full_int8']['wer'])} -> {pct(lm_int8['wer'])}%, RTF "
                            f"{q['full_int8']['rtf']:.4f} -> {lm_int8['rtf']:.4f}, chunk p90 "
                            f"{q['full_int8']['latency_ms_p90']:.1f} -> {lm_int8['latency_ms_p90']:.1f} ms")
        for mode, m in q.items():
            for sig, info in (m.get("mcu") or {}).items():
                rows.append(f"- {budget} MCU `{sig}`: TFLite-Micro arena {info.get('arena_bytes')} bytes, "
                            f"{info.get('size_bytes')} bytes, TFLM vs LiteRT max |diff| {info.get('max_abs_diff_lsb')} LSB")
    t = d.get("timings", {})
    rows.append("- wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in t.items())
                + (" (supernet trained by an earlier run of the same command and reused; supernet_s is "
                   "that training's time)" if d.get("supernet_reused") else ""))
    sup = d.get("supernet", {})
    rows.append(f"- supernet: {json.dumps({k: v for k, v in sup.items() if k in ('step', 'dev', 'stopped', 'trace_count')})}")
    return rows


@section("Issue 3, stop 29: the demo's shipped LM, fitted on the corpus train text vs the training transcripts, "
         "same bundle (phone_high.full_int8 of make demo), beam 4, weight 0.7; dev chooses (declared before: lowest "
         "dev WER over the four settings), test reported for all four",
         "demo_lm_ab/*.json",
         "for split in dev test; for b in 1.0 1.5: python -m experiments.evaluate_tflite "
         "--model=artifacts/demo/bundles/phone_high/phone_high.full_int8.tflite "
         "--manifest=artifacts/demo/corpus/$split.jsonl --beam_size=4 --lm_weight=0.7 --lm_length_bonus=$b "
         "--measure_memory=false --update_sidecar=false, once with --lm_file=artifacts/demo/bundles/phone_high/"
         "lm.json.gz (the corpus-text LM the bundle ships) --output_json=artifacts/demo_lm_ab/$split.phone_high."
         "full_int8.corpus_lm_b$b.json and once with --lm_train_manifest=artifacts/demo/corpus/train.jsonl "
         "--output_json=artifacts/demo_lm_ab/$split.phone_high.full_int8.transcript_lm_b$b.json")
def demo_lm_ab(runs):
    rows = ["| split | LM fitted on | length bonus | utterances | WER % | command % | open % |",
            "|---|---|---|---|---|---|---|"]
    for _, r in sorted(runs.items(), key=lambda kv: (os.path.basename(kv[1]["manifest"]),
                                                      "file" in kv[1]["lm"], kv[1]["lm"]["length_bonus"])):
        lm, dom = r["lm"], r.get("wer_by_domain") or {}
        fitted = "corpus train text" if "file" in lm else "training transcripts"
        rows.append(f"| {os.path.basename(r['manifest'])[:-len('.jsonl')]} | {fitted} | {lm['length_bonus']} | "
                    f"{r['num_utterances']} | {pct(r['wer'])} | {pct(dom.get('command'))} | {pct(dom.get('open'))} |")
    return rows


def _size_breakdown(row: dict):
    """The report row's byte breakdown (`op_report.size_breakdown`), computed from the bundle's
    .tflite when an older report lacks it; None when neither exists."""
    if row.get("size_breakdown"):
        return row["size_breakdown"]
    path = os.path.join(FLAGS.artifacts, "demo", row["tflite"])
    if not os.path.exists(path):
        return None
    from tf_todm.export.op_report import size_breakdown
    with open(path, "rb") as f:
        return size_breakdown(f.read())


def expand_braces(pattern: str) -> list[str]:
    """Shell-style alternatives, which `glob` lacks: "a{b,c}d{e,f}" -> [abde, abdf, acde, acdf]
    (not nested)."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    end = pattern.find("}", start)
    if end < 0:
        raise ValueError(f"{pattern}: '{{' without a closing '}}'")
    return [pattern[:start] + choice + rest for choice in pattern[start + 1:end].split(",")
            for rest in expand_braces(pattern[end + 1:])]


def load_json(path: str):
    """The JSON at `path`; with a `*` or `{a,b}` alternatives in it, {file stem: JSON} of every
    match (keyed "folder/stem" when stems repeat across folders); None if nothing exists."""
    if "*" in path or "{" in path:
        matches = sorted({m for pattern in expand_braces(path) for m in glob.glob(pattern)})
        if not matches:
            return None
        stems = [os.path.splitext(os.path.basename(m))[0] for m in matches]
        unique = len(set(stems)) == len(stems)
        out = {}
        for match, stem in zip(matches, stems):
            with open(match) as f:
                out[stem if unique else f"{os.path.basename(os.path.dirname(match))}/{stem}"] = json.load(f)
        return out
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def previous_sections(text: str) -> dict:
    """{section title: body} of a WORKSPACE.md's `### ` sections; the body is what follows the
    section's `Source:` line (the rendering), without a `KEPT_NOTE` line."""
    sections = {}
    for chunk in text.split("\n### ")[1:]:
        title, _, rest = chunk.partition("\n")
        if "\nSource: " not in "\n" + rest:
            continue
        body = rest.split("Source: ", 1)[1].partition("\n")[2]
        body = "\n".join(l for l in body.strip("\n").splitlines() if l != KEPT_NOTE).strip("\n")
        sections[title.strip()] = body
    return sections


def previous_reliability_rows(text: str) -> dict:
    """{run file: table row} of a WORKSPACE.md's reliability table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] in RELIABILITY_RUNS:
            rows[cells[1]] = line
    return rows


def render(previous_text: str | None = None) -> str:
    """The whole results section (what `main` prints)."""
    previous = previous_sections(previous_text) if previous_text else {}
    out = ["### Reliability runs (JUnit XML in artifacts/reliability)\n",
           "\n".join(reliability_rows(previous_reliability_rows(previous_text or ""))) + "\n"]
    for title, path, command, render_section in SECTIONS:
        out.append(f"### {title}\n\nCommand: `{command}`  \nSource: `artifacts/{path}`\n")
        data = load_json(os.path.join(FLAGS.artifacts, path))
        if data is not None:
            out.append("\n".join(render_section(data)) + "\n")
        elif previous.get(title) and not previous[title].startswith("Not run in this workspace"):
            out.append(f"{KEPT_NOTE}\n\n{previous[title]}\n")
        else:
            out.append("Not run in this workspace yet.\n")
    return "\n".join(out)


def main(argv):
    del argv
    previous_text = None
    if FLAGS.previous:
        with open(FLAGS.previous, encoding="utf-8") as f:
            previous_text = f.read()
    print(render(previous_text))


if __name__ == "__main__":
    app.run(main)
