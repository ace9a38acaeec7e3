"""experiments.lm_pruning on a tiny real run: the unpruned file's cross-entropy equals the fitted
LM's, pruning shrinks the file, and bad thresholds are one-line errors."""
import json

from tf_todm.data.manifest import read_manifest
from tf_todm.data.tokenizer import Tokenizer
from tf_todm.decoding import fit_token_lm


def test_pruning_rows_shrink_and_the_unpruned_row_is_the_fitted_lm(run_module, tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "pruning.json"
    proc = run_module(["experiments.lm_pruning", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--lm_train_manifest={tiny_corpus['train_manifest']}", "--lm_order=3",
                       "--min_counts=1,2", f"--pruning_json={out}"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["min_count"] for r in rows] == [1, 2]
    assert rows[1]["ngrams"] < rows[0]["ngrams"] and rows[1]["bytes"] < rows[0]["bytes"]
    tokenizer = Tokenizer(tiny_corpus["tokenizer_path"])
    lm = fit_token_lm([u.text for u in read_manifest(tiny_corpus["train_manifest"])], tokenizer, 3)
    for domain, nats in rows[0]["nats_per_token"].items():
        ids = tokenizer.encode([u.text for u in read_manifest(tiny_corpus["dev_manifest"]) if (u.domain or "all") == domain])
        want = -sum(lm.sequence_log_prob(seq) for seq in ids) / sum(len(seq) + 1 for seq in ids)
        assert abs(nats - want) < 1e-4, domain


def test_text_file_alone_fits_the_lm_on_its_lines(run_module, tiny_run, tiny_corpus, tmp_path):
    """--lm_train_text without a manifest: the unpruned row is the LM fitted on the file's lines."""
    sentences = ["turn the lights on", "what a lovely day it is"]
    text = tmp_path / "lm_text.txt"
    text.write_text("\n".join(sentences) + "\n\n", encoding="utf-8")
    out = tmp_path / "pruning.json"
    proc = run_module(["experiments.lm_pruning", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--lm_train_text={text}", "--lm_order=3", "--min_counts=1", f"--pruning_json={out}"],
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["lm_train_manifest"] is None and result["lm_train_text"] == str(text)
    tokenizer = Tokenizer(tiny_corpus["tokenizer_path"])
    lm = fit_token_lm(sentences, tokenizer, 3)
    for domain, nats in result["rows"][0]["nats_per_token"].items():
        ids = tokenizer.encode([u.text for u in read_manifest(tiny_corpus["dev_manifest"]) if (u.domain or "all") == domain])
        want = -sum(lm.sequence_log_prob(seq) for seq in ids) / sum(len(seq) + 1 for seq in ids)
        assert abs(nats - want) < 1e-4, domain
    proc = run_module(["experiments.lm_pruning", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--pruning_json={out}"], timeout=300)
    assert proc.returncode == 1 and "--lm_train_text are required" in proc.stderr.strip().splitlines()[-1]


def test_bad_threshold_is_one_line_exit_1(run_module, tiny_run, tiny_corpus, tmp_path):
    proc = run_module(["experiments.lm_pruning", f"--run_dir={tiny_run}", f"--manifest={tiny_corpus['dev_manifest']}",
                       f"--lm_train_manifest={tiny_corpus['train_manifest']}", "--min_counts=0",
                       f"--pruning_json={tmp_path / 'p.json'}"], timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: --min_counts=['0']")
