"""experiments.benchmark: the comparison maths on hand-made rows, and the tiny config end to end."""
import json
import os
import subprocess
import sys

import pytest

from experiments import benchmark as bm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _hist(wers):
    return [{"epoch": float(i + 1), "dev_wer": w, "train_seconds": 10.0 * (i + 1)}
            for i, w in enumerate(wers)]


def test_epochs_to_reach():
    assert bm.epochs_to_reach(_hist([0.9, 0.6, 0.5]), 0.6) == (2.0, 20.0)
    assert bm.epochs_to_reach(_hist([0.9, 0.8]), 0.5) == (None, None)


def test_compare_repr_transfer_speedup_and_equal_epoch_wer():
    rows = [
        {"method": "scratch_ctc", "size": "ctc_r0.5", "history": _hist([0.95, 0.9, 0.85, 0.8, 0.75, 0.7]),
         "train_seconds": 60.0, "test_wer_float": 0.7, "params": 100},
        {"method": "repr_transfer", "size": "ctc_r0.5", "stage2_history": _hist([0.72, 0.6]),
         "stage1_seconds": 5.0, "test_wer_float": 0.6, "params": 100, "epochs": 3},
    ]
    (c,) = bm.compare_repr_transfer(rows, stage1_epochs=1, stage2_epochs=2)
    assert c["scratch_final_dev_wer"] == 0.7
    assert c["repr_stage2_epochs_to_reach"] == 2.0 and c["repr_total_epochs_to_reach"] == 3.0
    assert c["speedup_epochs_total"] == pytest.approx(6 / 3) and not c["target_speedup_3x_met"]
    assert c["speedup_wall_time"] == pytest.approx(60.0 / (5.0 + 20.0))
    eq = c["dev_wer_at_equal_ctc_epochs"]
    assert (eq["repr_transfer"], eq["scratch"]) == (0.6, 0.9)
    assert eq["relative_improvement"] == pytest.approx(1 / 3) and c["target_wer_10pct_met"]
    assert c["dev_wer_at_equal_total_epochs"]["scratch"] == 0.85


def test_compare_kd_reduction_and_degradation():
    rows = [{"method": "individual", "size": "teacher", "params": 1000, "test_wer_float": 0.40},
            {"method": "progressive_kd", "size": "stage2", "params": 350, "test_wer_float": 0.41},
            {"method": "one_shot_kd", "size": "stage2", "params": 350, "test_wer_float": 0.50}]
    kd = bm.compare_kd(rows, 2)
    assert kd["progressive_kd"]["param_reduction"] == pytest.approx(0.65)
    assert kd["progressive_kd"]["relative_wer_degradation"] == pytest.approx(0.025)
    assert kd["progressive_kd"]["target_met"] and not kd["one_shot_kd"]["target_met"]
    assert "individual" not in kd
    rows[0]["test_wer_float"] = 1.0  # a teacher that learnt nothing: no verdict
    assert bm.compare_kd(rows, 2)["progressive_kd"]["target_met"] is None


@pytest.mark.slow
def test_tiny_config_writes_report_with_every_field(recipe_corpus, tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--config=experiments/flags/bench_tiny.cfg",
         f"--out_dir={out}", f"--corpus_dir={recipe_corpus['root']}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out / "report.json"))
    methods = {r["method"] for r in report["rows"]}
    assert methods == {"supernet", "individual", "progressive_kd", "one_shot_kd", "repr_transfer",
                       "scratch_ctc"}
    for row in report["rows"]:
        missing = [f for f in bm.REPORT_FIELDS if f not in row]
        assert not missing, (row["method"], missing)
        assert row["params"] > 0 and 0 <= row["test_wer_float"] and row["train_seconds"] > 0
        assert row["int8_bytes"] > 0
    assert report["comparisons"]["repr_transfer"] and report["comparisons"]["kd"]["progressive_kd"]
    assert (out / "report.md").exists() and (out / "wer_vs_params.png").exists()


def test_bad_method_exits_1_with_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--config=experiments/flags/bench_tiny.cfg",
         f"--out_dir={tmp_path}", "--methods=individual,magic"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --methods: unknown ['magic']")


@pytest.mark.slow
def test_teacher_run_is_loaded_not_trained(recipe_corpus, tiny_config, tiny_train_config, tmp_path):
    """--teacher_run: the students derive from that run's model and tokenizer; its row reports the
    run's own training time, and no teacher is trained in the benchmark folder."""
    import shutil

    import tensorflow as tf

    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.recipes.progressive_kd import train_from_scratch
    tok = Tokenizer(recipe_corpus["tokenizer_path"])
    tf.keras.utils.set_random_seed(1)
    run = tmp_path / "teacher"
    train_from_scratch(tiny_config(tok.vocab_size, num_blocks=2), tiny_train_config(max_steps=2),
                       recipe_corpus["train"], recipe_corpus["dev"][:2], tok, str(run))
    shutil.copyfile(recipe_corpus["tokenizer_path"], run / "tokenizer.model")
    summary = json.load(open(run / "train_summary.json"))
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--config=experiments/flags/bench_tiny.cfg",
         f"--out_dir={out}", f"--corpus_dir={recipe_corpus['root']}", f"--teacher_run={run}",
         "--methods=repr_transfer,scratch_ctc", "--reductions=0.5", "--tflite=false"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out / "report.json"))
    rows = {(r["method"], r["size"]): r for r in report["rows"]}
    assert set(rows) == {("individual", "teacher"), ("repr_transfer", "ctc_r0.5"), ("scratch_ctc", "ctc_r0.5")}
    assert rows[("individual", "teacher")]["train_seconds"] == summary["train_seconds"] > 0
    assert report["model_config"]["model_dim"] == 12 and report["model_config"]["num_blocks"] == 2
    assert rows[("repr_transfer", "ctc_r0.5")]["num_blocks"] == rows[("scratch_ctc", "ctc_r0.5")]["num_blocks"] == 1
    assert not (out / "individual").exists()
    assert report["comparisons"]["repr_transfer"]
