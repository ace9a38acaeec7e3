"""experiments.tune_lm_fusion on a real (tiny) run folder: one row per setting in grid order, the
best row is the lowest fused dev WER, every row covers the same utterances; beam 1 is refused.
(Run as subprocesses: the module shares evaluate_run's flags, which clash with other experiments'.)"""
import json
import os


def test_grid_on_a_real_run(run_module, tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "tune.json"
    proc = run_module(["experiments.tune_lm_fusion", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--lm_train_manifest={tiny_corpus['train_manifest']}", "--beam_size=2", "--max_utterances=4",
                       "--lm_weights=0.3,0.6", "--lm_length_bonuses=0,1", f"--tune_json={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [(r["kind"], r["weight"], r["length_bonus"]) for r in result["rows"]] == [
        ("greedy", 0.0, 0.0), ("beam", 0.0, 0.0), ("fused", 0.3, 0.0), ("fused", 0.3, 1.0),
        ("fused", 0.6, 0.0), ("fused", 0.6, 1.0)]
    assert result["num_utterances"] == 4
    assert sorted(result["lm_dev_nats_per_token"], key=int) == ["2", "4", "6", "8"]
    for per_domain in result["lm_dev_nats_per_token"].values():
        assert per_domain and all(0 < v < 10 for v in per_domain.values())
    assert result["best"]["wer"] == min(r["wer"] for r in result["rows"][2:])
    assert os.path.exists(str(out).replace(".json", ".png"))
    for row in result["rows"]:
        assert sum(d["num_utterances"] for d in row["domains"].values()) == 4
    assert "best: --lm_weight=" in proc.stdout


def test_beam_one_is_refused_by_name(run_module, tiny_run, tiny_corpus):
    proc = run_module(["experiments.tune_lm_fusion", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--lm_train_manifest={tiny_corpus['train_manifest']}", "--beam_size=1"], timeout=300)
    assert proc.returncode == 1
    assert "--beam_size=1" in proc.stderr.strip().splitlines()[-1]
