"""The training text of a generated corpus: every sentence its plan assigned to the train split.

A corpus of `hours` speaks only some of the sentences `synthetic.sentence_pools` assigned to its
train split; the rest is in-domain text the acoustic model never hears, the analogue of
LibriSpeech's LM corpus (books kept apart from the test books). `corpus_train_text` rebuilds the
pools from the corpus's `summary.json` (seed, requested hours), checks them against the three
manifests (so a corpus made by another version or another fortunes folder fails loudly instead
of leaking), and returns the train sentences of both domains for fitting a language model.

Held-out safety: the pools are disjoint by sentence. A fortune quote can also appear in two files
with a word changed, so a text-only fortune sentence sharing any word `shared_ngram`-gram with a
dev or test pool sentence is dropped. Commands come from one grammar, where sharing 5-grams
("set an alarm for seven") is the grammar itself, so they keep the pools' exact disjointness only.
Sentences spoken in the train audio are always kept: the acoustic model trains on them anyway.
"""

from __future__ import annotations

import json
import os

from tf_todm.data.manifest import read_manifest
from tf_todm.data.synthetic import CorpusConfig, DOMAINS, SPLITS, sentence_pools

FILTERED_DOMAINS = ("open",)


class CorpusTextError(ValueError):
    """The corpus folder cannot give its training text (missing files, or its pools do not match
    its manifests)."""


def word_ngrams(sentence: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of a space-separated sentence (empty when it has fewer than n words)."""
    words = sentence.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def drop_sentences_sharing_ngrams(sentences, heldout, n: int) -> tuple[list[str], list[str]]:
    """(kept, dropped): `sentences` split by whether they share a word n-gram with any `heldout`
    sentence (or equal one). Order is kept."""
    heldout = list(heldout)
    exact = set(heldout)
    grams = set().union(*(word_ngrams(s, n) for s in heldout)) if heldout else set()
    kept, dropped = [], []
    for s in sentences:
        (dropped if s in exact or not grams.isdisjoint(word_ngrams(s, n)) else kept).append(s)
    return kept, dropped


def _read_summary(corpus_dir: str) -> dict:
    path = os.path.join(corpus_dir, "summary.json")
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except FileNotFoundError:
        raise CorpusTextError(f"{path}: missing; expected a corpus made by experiments.make_corpus") from None
    except json.JSONDecodeError as e:
        raise CorpusTextError(f"{path}: not JSON ({e})") from None
    for field in ("seed", "requested_hours"):
        if field not in summary:
            raise CorpusTextError(f"{path}: no field '{field}'; expected a corpus made by experiments.make_corpus")
    return summary


def check_pools_match_manifests(corpus_dir: str, pools: dict) -> dict[str, dict[str, set[str]]]:
    """{split: {domain: spoken sentences}} of the three manifests; raises CorpusTextError naming the
    manifest and the first transcript that is not in its split's pool."""
    pool_sets = {d: {split: set(pools[d][split]) for split in SPLITS} for d in DOMAINS}
    spoken = {}
    for split in SPLITS:
        path = os.path.join(corpus_dir, f"{split}.jsonl")
        if not os.path.exists(path):
            raise CorpusTextError(f"{path}: missing; expected the corpus's {split} manifest")
        spoken[split] = {d: set() for d in DOMAINS}
        for u in read_manifest(path):
            if u.domain not in DOMAINS:
                raise CorpusTextError(f"{path}: domain {u.domain!r} of {u.audio_filepath}; expected one of {DOMAINS}")
            if u.text not in pool_sets[u.domain][split]:
                raise CorpusTextError(f"{path}: transcript {u.text!r} is not in the rebuilt {u.domain} {split} pool; "
                                      "the corpus was made by another version or fortunes folder, so its "
                                      "held-out sentences cannot be known")
            spoken[split][u.domain].add(u.text)
    return spoken


def corpus_train_text(corpus_dir: str, shared_ngram: int = 5, fortunes_dir: str | None = None,
                      config: CorpusConfig = CorpusConfig()) -> tuple[list[str], dict]:
    """(sentences, stats): the corpus's train-split text, both domains, for a language model.

    `stats` counts per domain: spoken (train transcripts), text_only (pool sentences never spoken),
    dropped (text-only open sentences sharing a word `shared_ngram`-gram with a dev/test pool
    sentence), kept (in the output); plus the held-out pool sizes.
    """
    if shared_ngram < 1:
        raise CorpusTextError(f"shared_ngram must be >= 1, got {shared_ngram}")
    summary = _read_summary(corpus_dir)
    pools = sentence_pools(summary["requested_hours"], summary["seed"], config, fortunes_dir)
    spoken = check_pools_match_manifests(corpus_dir, pools)
    heldout = [s for d in DOMAINS for split in ("dev", "test") for s in pools[d][split]]
    sentences, stats = [], {"corpus_dir": os.path.abspath(corpus_dir), "shared_ngram": shared_ngram,
                            "filtered_domains": list(FILTERED_DOMAINS), "domains": {}}
    for domain in DOMAINS:
        train_pool = pools[domain]["train"]
        spoken_here = [s for s in train_pool if s in spoken["train"][domain]]
        text_only = [s for s in train_pool if s not in spoken["train"][domain]]
        kept, dropped = (drop_sentences_sharing_ngrams(text_only, heldout, shared_ngram)
                         if domain in FILTERED_DOMAINS else (text_only, []))
        sentences += spoken_here + kept
        stats["domains"][domain] = {
            "spoken": len(spoken_here), "text_only": len(text_only), "dropped": len(dropped),
            "kept": len(spoken_here) + len(kept), "heldout_pool": {s: len(pools[domain][s]) for s in ("dev", "test")},
            "dropped_examples": dropped[:5]}
    stats["sentences"] = len(sentences)
    stats["words"] = sum(len(s.split()) for s in sentences)
    return sentences, stats
