"""experiments.workspace_results: glob sections and the probe table's reproducing commands."""

import json

import pytest

from experiments import workspace_results as wr


def _probe(path, steps, **settings):
    base = {"encoder": "conformer", "train_manifest": "m.jsonl", "num_utterances": 400, "steps": steps[-1],
            "learning_rate": 0.001, "normalization": "global", "batch_size": 16}
    base.update(settings)
    curve = [{"step": s, "loss": 3.0 - s / 1000, "train_wer": 1.0, "dev_wer": 0.9, "seconds": s / 10}
             for s in steps]
    path.write_text(json.dumps({"settings": base, "curve": curve}))


def test_load_json_glob_keys_by_stem_and_none_when_missing(tmp_path):
    assert wr.load_json(str(tmp_path / "plateau_*.json")) is None
    assert wr.load_json(str(tmp_path / "missing.json")) is None
    _probe(tmp_path / "plateau_b.json", [100])
    _probe(tmp_path / "plateau_a.json", [100])
    (tmp_path / "other.json").write_text("{}")
    runs = wr.load_json(str(tmp_path / "plateau_*.json"))
    assert sorted(runs) == ["plateau_a", "plateau_b"]
    assert runs["plateau_a"]["settings"]["encoder"] == "conformer"


def test_brace_alternatives_pick_exactly_the_named_runs(tmp_path):
    assert wr.expand_braces("r_{a,b}/e{,_s6}.json") == ["r_a/e.json", "r_a/e_s6.json", "r_b/e.json", "r_b/e_s6.json"]
    with pytest.raises(ValueError, match="without a closing"):
        wr.expand_braces("r_{a,b/e.json")
    for run in ("flite8", "flite8_vtlp", "flite8_vtlp_e3"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "eval.json").write_text(json.dumps({"run": run}))
    found = wr.load_json(str(tmp_path / "{flite8,flite8_vtlp,rerun23}/eval.json"))
    assert sorted(found) == ["flite8/eval", "flite8_vtlp/eval"]  # not the _e3 run a prefix glob would take
    assert wr.load_json(str(tmp_path / "{rerun23}/eval.json")) is None


def test_probe_command_names_only_changed_settings():
    settings = {"encoder": "bilstm", "num_utterances": 400, "steps": 600, "learning_rate": 0.001,
                "train_manifest": "m.jsonl", "normalization": "global", "bilstm_batch_norm": True,
                "batch_size": 16, "tokenizer": "t.model"}
    command = wr.probe_command("plateau_x", settings)
    assert command.startswith("python -m experiments.probe_ctc_plateau --encoder=bilstm --num_utterances=400 "
                              "--steps=600 --learning_rate=0.001 --train_manifest=m.jsonl")
    assert "--bilstm_batch_norm=True" in command and "--tokenizer=t.model" in command
    assert "--normalization" not in command and "--batch_size" not in command
    assert command.endswith("--output_json=artifacts/probe/plateau_x.json")


def test_plateau_table_has_one_row_per_run_with_losses_at_their_steps(tmp_path):
    _probe(tmp_path / "plateau_a.json", [100, 200])
    _probe(tmp_path / "plateau_b.json", [100, 200, 300], normalization="utterance")
    rows = wr.plateau_probes(wr.load_json(str(tmp_path / "plateau_*.json")))
    row_a = next(r for r in rows if r.startswith("| plateau_a |"))
    row_b = next(r for r in rows if r.startswith("| plateau_b |"))
    cells_a = [c.strip() for c in row_a.split("|")[1:-1]]
    assert cells_a[5:8] == ["2.90", "2.80", ""]  # loss@100, @200, (no @300)
    assert cells_a[-3:] == ["2.80 (step 200)", "100.0", "90.0"]
    assert "normalization=utterance" in row_b and "normalization" not in row_a


def test_speaker_rows_one_row_per_voice_with_its_domain_wers():
    assert wr.speaker_rows({"speakers": {}}) == [] and wr.speaker_rows({}) == []
    d = {"speakers": {
        "flite:rms": {"wer": 0.9, "cer": 0.5, "num_utterances": 4,
                      "domains": {"command": {"wer": 0.8}, "open": {"wer": 1.0}}},
        "espeak:en": {"wer": 0.25, "cer": 0.1, "num_utterances": 2, "domains": {"command": {"wer": 0.25}}}}}
    rows = wr.speaker_rows(d)
    assert "| voice | utterances | WER command % | WER open % | WER all % | CER all % |" in rows
    assert "| flite:rms | 4 | 80.0 | 100.0 | 90.0 | 50.0 |" in rows
    assert "| espeak:en | 2 | 25.0 | - | 25.0 | 10.0 |" in rows


def test_train_once_table_states_ratio_and_relative_wer_against_targets():
    d = {"train_hours": 1.6, "train": {"num_epochs": 12}, "test_utterances": 198, "supernet_seconds": 900.0,
         "supernet_steps": 100, "alone_seconds_total": 1000.0, "time_ratio_supernet_over_sum_alone": 0.9,
         "sizes": [{"size": "largest", "params": 3, "wer_supernet": 0.5, "wer_alone": 0.5, "alone_seconds": 500.0,
                    "alone_steps": 100},
                   {"size": "smallest", "params": 1, "wer_supernet": 0.8, "wer_alone": 0.6,
                    "alone_seconds": 500.0, "alone_steps": 100}]}
    rows = wr.train_once_real(d)
    assert any("**0.90** (target <= 0.5: NOT met)" in r for r in rows)
    assert "| largest | 3 | 50.0 | 50.0 | +0.0% | met |" in rows
    assert "| smallest | 1 | 80.0 | 60.0 | +33.3% | NOT met |" in rows
    assert "largest subnet trains alone for the first 0 steps" in rows[0]
    d["train"]["largest_only_steps"] = 1200
    assert "largest subnet trains alone for the first 1200 steps" in wr.train_once_real(d)[0]


def test_bench_report_rows_and_repr_transfer_verdicts():
    from experiments import benchmark as bm
    hist = lambda wers: [{"epoch": float(i + 1), "dev_wer": w, "train_seconds": 10.0 * (i + 1)}  # noqa: E731
                         for i, w in enumerate(wers)]
    base = {"int8_bytes": 900, "test_wer_int8": None, "rtf_float": 0.01, "rtf_int8": None, "epochs": 4}
    rows = [dict(base, method="scratch_ctc", size="ctc_r0.5", params=1000, test_wer_float=0.7, train_seconds=60.0,
                 history=hist([0.95, 0.9, 0.85, 0.8, 0.75, 0.7])),
            dict(base, method="individual", size="teacher", params=3000, test_wer_float=0.5, train_seconds=9.0,
                 test_wer_float_by_domain={"command": 0.25, "open": 0.75}),
            dict(base, method="repr_transfer", size="ctc_r0.5", params=1000, test_wer_float=0.6, train_seconds=25.0,
                 stage1_seconds=5.0, stage2_history=hist([0.72, 0.6]))]
    d = {"data": {"source": "default corpus c", "train_hours": 6.3, "test_utterances": 400}, "rows": rows,
         "comparisons": {"repr_transfer": bm.compare_repr_transfer(rows, 1, 2), "kd": {}}}
    out = wr.bench_report(d)
    assert "| scratch_ctc | ctc_r0.5 | 1000 | 900 | 70.0 | - | - | - | 0.0100 | - | 60 | 4 |" in out
    assert "| individual | teacher | 3000 | 900 | 50.0 | 25.0 | 75.0 | - | 0.0100 | - | 9 | 4 |" in out
    text = "\n".join(out)
    assert "2.00x fewer epochs" in text and "target >= 3x fewer epochs: NOT met" in text
    assert "transfer 60.0 vs scratch 90.0, relative +33.3% better; target >= 10%: met" in text
    assert "- dev WER per epoch, repr_transfer ctc_r0.5: 1: 72.0, 2: 60.0" in text
    rows[-1]["stage2_history"] = hist([0.9, 0.8])  # never reaches scratch's final 70%
    text = "\n".join(wr.bench_report(dict(d, comparisons={"repr_transfer": bm.compare_repr_transfer(rows, 1, 2)})))
    assert "- transfer does not reach it within its stage-2 epochs; target >= 3x fewer epochs: NOT met." in text


def test_progressive_kd_table_judges_the_final_size_against_the_targets():
    test = lambda wer: {"wer": wer, "wer_by_domain": {"command": wer / 2, "open": wer}}  # noqa: E731
    d = {"teacher": {"params": 1000, "test": test(0.40)},
         "stages": [{"params": 600, "init": "slice", "train_seconds": 50.0, "test": test(0.41)},
                    {"params": 380, "init": "slice", "train_seconds": 40.0, "test": test(0.41)}],
         "one_shot": {"params": 380, "train_seconds": 80.0, "test": test(0.50)},
         "scratch": {"params": 380, "train_seconds": 70.0, "test": test(0.90)}}
    rows = wr.progressive_kd(d)
    assert "| teacher | 1000 | 0.0% | 40.0 | 20.0 | 40.0 | +0.0% | - | - |" in rows
    assert "| stage 1 | 600 | 40.0% | 41.0 | 20.5 | 41.0 | +2.5% | 50 | - |" in rows
    assert "| stage 2 | 380 | 62.0% | 41.0 | 20.5 | 41.0 | +2.5% | 40 | met |" in rows
    assert "| one_shot | 380 | 62.0% | 50.0 | 25.0 | 50.0 | +25.0% | 80 | NOT met |" in rows


def test_search_real_table_names_the_fidelity_and_the_calls():
    row = lambda s_wer, s_time, screenings: {
        "budget": "phone_low", "seed": 0, "search_at_least_as_good": True,
        "time_ratio_search_over_random": s_time / 100.0,
        "search": {"best_wer": s_wer, "evaluations": 4 if screenings else 40, "screenings": screenings,
                   "wall_time_s": s_time},
        "random": {"best_wer": 0.867, "evaluations": 50, "wall_time_s": 100.0}}
    runs = {"demo_supernet": {"rows": [row(0.844, 131.0, 0)]},
            "demo_supernet_screened": {"screen_dev_batches": 2, "screen_calibration_batches": 2,
                                       "finalists": 4, "rows": [row(0.85, 40.0, 40)]}}
    lines = wr.search_real(runs)
    assert lines[2] == ("| phone_low | 0 | single fidelity | 84.4 | 86.7 | 40 full | 50 full | 131 | 100 | "
                        "1.31 | True |")
    assert lines[3] == ("| phone_low | 0 | two-fidelity (2 dev + 2 BN batches, 4 finalists) | 85.0 | 86.7 | "
                        "4 full + 40 screened | 50 full | 40 | 100 | 0.40 | True |")


def test_finetune_effect_table_reads_both_arms(tmp_path):
    from absl import flags as absl_flags
    for steps, wer in ((0, 0.875), (300, 0.827)):
        d = tmp_path / f"finetune_effect/ft{steps}"
        d.mkdir(parents=True)
        (d / "test_eval.json").write_text(json.dumps(
            {"wer": wer, "wer_by_domain": {"command": wer - 0.1, "open": wer + 0.05}}))
        (d / "export_summary.json").write_text(json.dumps(
            {"finetune": {"seconds": 195.4, "loss_first": 113.3, "loss_last": 24.3} if steps else None}))
    absl_flags.FLAGS(["prog", f"--artifacts={tmp_path}"])
    try:
        ft300 = wr.load_json(str(tmp_path / "finetune_effect/ft300/test_eval.json"))
        lines = wr.finetune_effect(ft300)
    finally:
        absl_flags.FLAGS.unparse_flags()
    assert lines[2] == "| 0 | 87.5 | 77.5 | 92.5 | 0 | - |"
    assert lines[3] == "| 300 | 82.7 | 72.7 | 87.7 | 195 | 113.3 / 24.3 |"


def test_render_keeps_earlier_renderings_of_sections_whose_json_is_missing(tmp_path, monkeypatch):
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    monkeypatch.setattr(flags.FLAGS, "artifacts", str(tmp_path))
    title, path, command, _ = wr.SECTIONS[0]
    other_title = wr.SECTIONS[1][0]
    previous = (f"# WORKSPACE\n\n### Reliability runs (JUnit XML in artifacts/reliability)\n\n"
                f"| fuzz_slow.xml | `cmd` | what | 15 | 0 | 0 | 137 |\n\n"
                f"### {title}\n\nCommand: `{command}`  \nSource: `artifacts/{path}`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                f"### {other_title}\n\nCommand: `x`  \nSource: `artifacts/y`\n\nNot run in this workspace yet.\n\n"
                "### What the numbers say\n\ntext\n")
    first = wr.render(previous)
    kept = first.split(f"### {title}\n")[1].split("\n### ")[0]
    assert wr.KEPT_NOTE in kept and "| 1 | 2 |" in kept
    assert "| fuzz_slow.xml | `cmd` | what | 15 | 0 | 0 | 137 |" in first
    other = first.split(f"### {other_title}\n")[1].split("\n### ")[0]
    assert "Not run in this workspace yet." in other and wr.KEPT_NOTE not in other
    # rendering again from the first output changes nothing (the note is not stacked)
    assert wr.render(first) == first
    assert wr.previous_sections(first)[title].startswith("| a | b |")  # the note is not part of the body


def test_search_heldout_counts_dev_and_test_verdicts_separately():
    def row(budget, s_dev, r_dev, s_test, r_test, ratio=0.5):
        return {"budget": budget, "seed": 0, "time_ratio_search_over_random": ratio,
                "search": {"best_wer": s_dev, "heldout_wer": s_test, "wall_time_s": 50.0},
                "random": {"best_wer": r_dev, "heldout_wer": r_test, "wall_time_s": 100.0},
                "search_at_least_as_good": s_dev <= r_dev, "search_at_least_as_good_heldout": s_test <= r_test}

    lines = wr.search_heldout({"heldout_x": {"rows": [row("mcu", 0.80, 0.79, 0.70, 0.72),
                                                      row("phone", 0.60, 0.61, 0.50, 0.49)]},
                               "heldout_y": {"rows": [row("mcu", 0.78, 0.79, 0.73, 0.72, ratio=1.05)]}})
    assert lines[2].startswith("| heldout_x | mcu | 0 | 80.0 | 79.0 | 70.0 | 72.0 | 50 | 100 | 0.50 | False | True |")
    # one verdict line per run file (one method each), not pooled across methods
    lines = [line for line in lines if not line.startswith("- pooled")]  # both files lack a setting
    assert lines[-2] == ("- heldout_x: at least as good in **1 of 2** runs on dev, **1 of 2** on test; "
                         "faster in **2 of 2** (time ratio 0.50-0.50).")
    assert lines[-1] == ("- heldout_y: at least as good in **1 of 1** runs on dev, **0 of 1** on test; "
                         "faster in **0 of 1** (time ratio 1.05-1.05).")


def test_search_heldout_reports_the_cost_cap():
    def row(evaluations, stopped):
        return {"budget": "b", "seed": 0, "time_ratio_search_over_random": 0.8,
                "search": {"best_wer": 0.5, "heldout_wer": 0.5, "wall_time_s": 80.0, "evaluations": evaluations,
                           "predictor": {"cost": {"cap": 10.0, "reference": 20.0, "spent": 9.0,
                                                  "stopped_by_cap": stopped}}},
                "random": {"best_wer": 0.6, "heldout_wer": 0.6, "wall_time_s": 100.0},
                "search_at_least_as_good": True, "search_at_least_as_good_heldout": True}

    lines = wr.search_heldout({"heldout_cap": {"rows": [row(34, False), row(27, True), row(29, True)]}})
    assert lines[-1].endswith("Cost cap: stopped by it in 2 of 3 runs, after 27-34 evaluations.")


def test_search_heldout_pools_run_files_of_one_setting():
    def row(budget, s_dev, r_dev, s_test, r_test, ratio):
        return {"budget": budget, "seed": 0, "time_ratio_search_over_random": ratio,
                "search": {"best_wer": s_dev, "heldout_wer": s_test, "wall_time_s": 50.0},
                "random": {"best_wer": r_dev, "heldout_wer": r_test, "wall_time_s": 100.0},
                "search_at_least_as_good": s_dev <= r_dev, "search_at_least_as_good_heldout": s_test <= r_test}

    setting = {"initial": 16, "cost_cap": 0.75}
    runs = {"heldout_a": {"predictor": setting, "rows": [row("mcu", 0.80, 0.81, 0.70, 0.72, 0.5),
                                                         row("phone", 0.60, 0.61, 0.50, 0.49, 0.9)]},
            "heldout_b": {"predictor": dict(setting), "rows": [row("mcu", 0.79, 0.78, 0.73, 0.72, 1.1)]},
            "heldout_other": {"predictor": None, "rows": [row("mcu", 0.5, 0.9, 0.5, 0.9, 0.1)]}}
    lines = wr.search_heldout(runs)
    pooled = [line for line in lines if line.startswith("- pooled")]
    # mcu dev gaps +1 and -1 points -> 0.00; test +2 and -1 -> +0.50; phone +1 / -1
    assert pooled == ["- pooled heldout_a + heldout_b (same setting): at least as good in **2 of 3** on dev, "
                      "**1 of 3** on test; faster in **2 of 3**; mean WER gap per budget, dev / test points "
                      "(positive: search better): mcu +0.00 / +0.50, phone +1.00 / -1.00."]


def test_search_heldout_pools_runs_before_the_per_position_flag_with_counts_runs():
    def row(ratio):
        return {"budget": "mcu", "seed": 0, "time_ratio_search_over_random": ratio,
                "search": {"best_wer": 0.8, "heldout_wer": 0.7, "wall_time_s": 50.0},
                "random": {"best_wer": 0.8, "heldout_wer": 0.7, "wall_time_s": 100.0},
                "search_at_least_as_good": True, "search_at_least_as_good_heldout": True}

    runs = {"old": {"predictor": {"initial": 16}, "rows": [row(0.5)]},
            "new_counts": {"predictor": {"initial": 16, "per_position": False}, "rows": [row(0.6)]},
            "new_positions": {"predictor": {"initial": 16, "per_position": True}, "rows": [row(0.7)]}}
    pooled = [line for line in wr.search_heldout(runs) if line.startswith("- pooled")]
    assert len(pooled) == 1 and pooled[0].startswith("- pooled new_counts + old (same setting)")


def test_lm_fusion_tuning_table_marks_the_chosen_setting():
    def row(kind, beam, weight, bonus, wer):
        return {"kind": kind, "beam_size": beam, "weight": weight, "length_bonus": bonus, "wer": wer,
                "domains": {"command": {"wer": wer - 0.1}, "open": {"wer": wer + 0.1}}}

    rows = [row("greedy", 1, 0.0, 0.0, 0.6), row("beam", 4, 0.0, 0.0, 0.58), row("fused", 4, 0.4, 0.5, 0.5),
            row("fused", 4, 0.8, 0.5, 0.52)]
    d = {"lm_dev_nats_per_token": {"2": {"command": 2.5, "open": 2.9}, "10": {"command": 0.7, "open": 2.0}},
         "num_utterances": 200, "lm_order": 6, "rows": rows, "best": rows[2]}
    lines = wr.lm_fusion_tuning(d)
    assert lines[2:6] == ["| order | command | open |", "|---|---|---|", "| 2 | 2.500 | 2.900 |",
                          "| 10 | 0.700 | 2.000 |"]
    assert "| fused **(chosen)** | 4 | 0.4 | 0.5 | 50.0 | 40.0 | 60.0 |" in lines
    assert "| fused | 4 | 0.8 | 0.5 | 52.0 | 42.0 | 62.0 |" in lines
    assert "| greedy | 1 | 0 | 0 | 60.0 | 50.0 | 70.0 |" in lines


def test_average_sweep_orders_by_checkpoint_count_and_names_the_lowest_dev_wer():
    def run(n, wer, command):
        return {"average_last": n, "wer": wer, "cer": wer / 2,
                "domains": {"command": {"wer": command}, "open": {"wer": 2 * wer - command}}}
    rows = wr.average_sweep({"eval_dev_avg10": run(10, 0.535, 0.334), "eval_dev_avg1": run(1, 0.561, 0.362),
                             "eval_dev_avg5": run(5, 0.527, 0.327)})
    body = [r for r in rows if r.startswith("| ") and r[2].isdigit()]
    assert [r.split("|")[1].strip() for r in body] == ["1", "5", "10"]
    assert body[1].split("|")[2].strip() == "1200"  # steps covered: 4 gaps of 300
    assert "| 52.7 | 32.7 | 72.7 |" in body[1]
    assert any(r.startswith("Lowest dev WER: 5 checkpoints") for r in rows)


def test_runs_side_by_side_one_column_per_run_with_the_checkpoints_it_averaged():
    def result(run, wer, steps, rms=None):
        speakers = {"espeak:en": {"wer": wer}}
        if rms is not None:
            speakers["flite:rms"] = {"wer": rms}
        return {"run_dir": f"/a/{run}/", "wer": wer, "checkpoint_steps": steps, "speakers": speakers,
                "domains": {"command": {"wer": wer / 2}, "open": {"wer": wer * 1.5}}}
    files = {"a/eval": result("run_a", 0.5, [4800, 5100], rms=0.8), "b/eval": result("run_b", 0.4, [6000])}
    rows = wr.runs_side_by_side(files)
    assert rows[0] == "| WER % | run_a | run_b |"
    assert "| command | 25.0 | 20.0 |" in rows and "| all | 50.0 | 40.0 |" in rows
    assert "| flite:rms | 80.0 | - |" in rows  # a voice one run did not decode
    assert rows[-1] == "| checkpoints averaged (steps) | 4800, 5100 | 6000 |"
    twice = {"eval_avg5": result("run_a", 0.5, [5100]), "eval_avg5_s6000": result("run_a", 0.4, [4800])}
    assert wr.runs_side_by_side(twice)[0] == "| WER % | eval_avg5 | eval_avg5_s6000 |"  # one run, two decodings
