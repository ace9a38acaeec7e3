"""Tests for tf_todm.data.corpus_text and experiments.make_lm_text: a real tiny corpus (espeak-ng,
flite, the Debian fortunes), its rebuilt sentence pools, and the held-out filters."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from tf_todm.data import synthetic
from tf_todm.data.corpus_text import (CorpusTextError, corpus_train_text, drop_sentences_sharing_ngrams,
                                      word_ngrams)
from tf_todm.data.manifest import read_manifest
from tf_todm.decoding.token_ngram import lm_training_texts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("corpus"))
    synthetic.generate_corpus(root, 0.01, seed=1, num_workers=2, progress=False)
    return root


def _brute_force_shares(sentence, heldout, n):
    words = sentence.split()
    for h in heldout:
        if h == sentence:
            return True
        hw = h.split()
        for i, j in itertools.product(range(len(words) - n + 1), range(len(hw) - n + 1)):
            if words[i:i + n] == hw[j:j + n]:
                return True
    return False


def test_word_ngrams():
    assert word_ngrams("a b c d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert word_ngrams("a b", 3) == set()


def test_drop_sentences_sharing_ngrams_matches_brute_force():
    heldout = ["the cat sat on the mat", "time flies like an arrow", "short one"]
    sentences = ["a cat sat on the mat today", "the cat sat on a mat", "fruit flies like an arrow",
                 "short one", "time flies", "nothing in common here at all", "like an arrow the cat sat"]
    for n in (2, 3, 4):
        kept, dropped = drop_sentences_sharing_ngrams(sentences, heldout, n)
        assert kept + dropped and sorted(kept + dropped) == sorted(sentences)
        for s in sentences:
            assert (s in dropped) == _brute_force_shares(s, heldout, n), (s, n)
    kept, dropped = drop_sentences_sharing_ngrams(sentences, heldout, 4)
    assert dropped == ["a cat sat on the mat today", "the cat sat on a mat", "fruit flies like an arrow", "short one"]
    assert kept == [s for s in sentences if s not in dropped]  # order kept


def test_corpus_train_text_keeps_train_and_excludes_every_held_out_sentence(corpus):
    sentences, stats = corpus_train_text(corpus, shared_ngram=5)
    texts = {split: [u.text for u in read_manifest(os.path.join(corpus, f"{split}.jsonl"))]
             for split in synthetic.SPLITS}
    pools = synthetic.sentence_pools(0.01, 1)
    heldout = {s for d in synthetic.DOMAINS for split in ("dev", "test") for s in pools[d][split]}
    assert set(texts["train"]) <= set(sentences)  # every spoken training transcript
    assert not heldout & set(sentences)
    assert not (set(texts["dev"]) | set(texts["test"])) & set(sentences)
    spoken = set(texts["train"])
    heldout_grams = set().union(*(word_ngrams(s, 5) for s in heldout))
    open_pool = set(pools["open"]["train"])
    for s in sentences:
        if s in open_pool and s not in spoken:
            assert not word_ngrams(s, 5) & heldout_grams, s
    assert len(sentences) == len(set(sentences)) == stats["sentences"]
    for domain, d in stats["domains"].items():
        assert d["kept"] == d["spoken"] + d["text_only"] - d["dropped"]
        assert d["spoken"] + d["text_only"] == len(pools[domain]["train"])
    assert stats["domains"]["command"]["dropped"] == 0  # commands keep exact disjointness only
    assert stats["domains"]["open"]["dropped"] > 0
    assert stats["domains"]["open"]["text_only"] > 10 * stats["domains"]["open"]["spoken"]


def test_corpus_whose_manifest_left_its_pool_fails_naming_the_manifest(corpus, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    os.symlink(os.path.join(corpus, "audio"), copy / "audio")
    for name in ("summary.json", "train.jsonl", "dev.jsonl"):
        (copy / name).write_text((open(os.path.join(corpus, name), encoding="utf-8").read()))
    test_lines = open(os.path.join(corpus, "test.jsonl"), encoding="utf-8").read().splitlines()
    record = json.loads(test_lines[0])
    record["text"] = "a sentence the corpus never planned"
    (copy / "test.jsonl").write_text("\n".join([json.dumps(record)] + test_lines[1:]) + "\n")
    with pytest.raises(CorpusTextError, match=r"test\.jsonl: transcript 'a sentence the corpus never planned'"):
        corpus_train_text(str(copy))
    os.remove(copy / "summary.json")
    with pytest.raises(CorpusTextError, match=r"summary\.json: missing"):
        corpus_train_text(str(copy))


def test_lm_training_texts_concatenates_and_names_bad_files(corpus, tmp_path):
    manifest = os.path.join(corpus, "train.jsonl")
    text = tmp_path / "lm.txt"
    text.write_text("first sentence\n\n second one \n", encoding="utf-8")
    transcripts = [u.text for u in read_manifest(manifest)]
    assert lm_training_texts(manifest, str(text)) == transcripts + ["first sentence", "second one"]
    assert lm_training_texts(text_path=str(text)) == ["first sentence", "second one"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="empty.txt: LM text file holds no sentence"):
        lm_training_texts(text_path=str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="missing.txt: LM text file does not exist"):
        lm_training_texts(text_path=str(tmp_path / "missing.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        lm_training_texts(text_path=str(tmp_path / "latin1.txt"))
    with pytest.raises(ValueError, match="needs training text"):
        lm_training_texts()


def test_make_lm_text_cli_writes_text_and_counts(corpus, tmp_path):
    out = tmp_path / "lm_text.txt"
    proc = subprocess.run([sys.executable, "-m", "experiments.make_lm_text", f"--corpus_dir={corpus}",
                           f"--out={out}", "--shared_ngram=4"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    stats = json.loads((tmp_path / "lm_text.txt.json").read_text())
    assert stats["shared_ngram"] == 4 and stats["sentences"] == len(lines)
    assert lines == corpus_train_text(corpus, shared_ngram=4)[0]
    bad = subprocess.run([sys.executable, "-m", "experiments.make_lm_text", f"--corpus_dir={tmp_path}",
                          f"--out={tmp_path / 'x.txt'}"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 1 and "summary.json: missing" in bad.stderr
    assert not (tmp_path / "x.txt").exists()
