"""experiments.evaluate_run on a real (tiny, briefly trained) run folder: per-domain numbers agree
with jiwer over the hypotheses it wrote, every test utterance is decoded once, bad input is one line."""
import json
import os

import jiwer
import pytest

from tf_todm.data.manifest import read_manifest

def test_per_domain_wer_matches_jiwer_over_written_hypotheses(run_module, tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "eval.json"
    manifest = tiny_corpus["dev_manifest"]
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tiny_run}", f"--manifest={manifest}",
                       f"--output_json={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    utterances = read_manifest(manifest)
    assert result["num_utterances"] == len(utterances) == len(result["hypotheses"])
    assert result["checkpoint_steps"] == [2]  # the run's final (and only kept) checkpoint
    assert sorted(h["reference"] for h in result["hypotheses"]) == sorted(u.text for u in utterances)
    expected_domains = {u.domain or "all" for u in utterances}
    assert set(result["domains"]) == expected_domains
    for domain, numbers in result["domains"].items():
        pairs = [h for h in result["hypotheses"] if h["domain"] == domain]
        assert numbers["num_utterances"] == len(pairs)
        refs, hyps = [p["reference"] for p in pairs], [p["hypothesis"] for p in pairs]
        assert numbers["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    all_refs = [h["reference"] for h in result["hypotheses"]]
    all_hyps = [h["hypothesis"] for h in result["hypotheses"]]
    assert result["wer"] == pytest.approx(jiwer.wer(all_refs, all_hyps))
    assert result["cer"] == pytest.approx(jiwer.cer(all_refs, all_hyps))
    assert any(line.startswith("all ") for line in proc.stdout.splitlines())
    # per speaker (the default corpus's TTS voices): every hypothesis tagged with its utterance's voice
    assert sorted((h["speaker"], h["reference"]) for h in result["hypotheses"]) == \
        sorted((u.speaker, u.text) for u in utterances)
    assert set(result["speakers"]) == {u.speaker for u in utterances} and len(result["speakers"]) > 1
    for speaker, numbers in result["speakers"].items():
        pairs = [h for h in result["hypotheses"] if h["speaker"] == speaker]
        assert numbers["num_utterances"] == len(pairs)
        assert numbers["wer"] == pytest.approx(jiwer.wer([p["reference"] for p in pairs],
                                                         [p["hypothesis"] for p in pairs]))
        assert sum(d["num_utterances"] for d in numbers["domains"].values()) == len(pairs)
    assert "speaker" in proc.stdout


def test_missing_run_folder_is_one_line_exit_1(run_module, tmp_path, tiny_corpus):
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tmp_path / 'nope'}",
                 f"--manifest={tiny_corpus['dev_manifest']}"], timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nope" in last, proc.stderr[-2000:]


def test_lm_fusion_run_records_its_lm_and_scores_like_jiwer(run_module, tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "eval_lm.json"
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                 f"--output_json={out}", "--beam_size=2", "--lm_weight=0.5", "--lm_length_bonus=0.2",
                 f"--lm_train_manifest={tiny_corpus['train_manifest']}", "--max_utterances=4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["lm"]["weight"] == 0.5 and result["lm"]["length_bonus"] == 0.2 and result["lm"]["order"] == 6
    assert result["lm"]["train_manifest"] == os.path.abspath(tiny_corpus["train_manifest"])
    assert result["num_utterances"] == 4
    assert result["wer"] == pytest.approx(jiwer.wer([h["reference"] for h in result["hypotheses"]],
                                                    [h["hypothesis"] for h in result["hypotheses"]]))


@pytest.mark.parametrize("args, message", [
    (["--lm_weight=0.5", "--beam_size=1"], "needs beam search"),
    (["--lm_weight=0.5", "--beam_size=2"], "needs --lm_train_manifest"),
])
def test_lm_fusion_bad_flags_are_one_line_exit_1(run_module, tiny_run, tiny_corpus, args, message):
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tiny_run}",
                 f"--manifest={tiny_corpus['dev_manifest']}", *args], timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr[-2000:]


def test_averaging_more_checkpoints_than_the_run_kept_is_one_line_exit_1(run_module, tiny_run, tiny_corpus):
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tiny_run}",
                       f"--manifest={tiny_corpus['dev_manifest']}", "--average_last=50"])
    assert proc.returncode == 1
    assert "cannot average the last 50" in proc.stderr and "Traceback" not in proc.stderr


def test_up_to_step_before_every_checkpoint_is_one_line_exit_1(run_module, tiny_run, tiny_corpus):
    proc = run_module(["experiments.evaluate_run", f"--run_dir={tiny_run}",
                       f"--manifest={tiny_corpus['dev_manifest']}", "--up_to_step=1"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "holds 0 checkpoints at or before step 1" in last and "steps kept: [2]" in last, proc.stderr[-2000:]
