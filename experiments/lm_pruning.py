"""Size vs quality of the shipped token LM under count pruning (`TokenNgramLM.to_backoff(min_count=)`).

    python -m experiments.lm_pruning --run_dir=artifacts/single_45min_8h \
        --manifest=artifacts/corpus_8h/dev.jsonl --lm_train_manifest=artifacts/corpus_8h/train.jsonl \
        --min_counts=1,2,3,5 --pruning_json=artifacts/lm_pruning/corpus_8h.json

Fits the `--lm_order` token LM on the training transcripts (`--lm_train_manifest`) and/or the lines
of `--lm_train_text` (the corpus train text, `experiments.make_lm_text`) with the run's tokenizer, writes it in
backoff form once per `--min_counts` value (gzipped JSON, as `experiments.export` ships it) and
reports per value: file bytes, stored n-grams, and the cross-entropy (nats per token, end of
sentence included) of the shipped file on `--manifest`'s transcripts per domain. Reuses
`experiments.evaluate_run`'s flags (run_dir, manifest, lm_train_manifest, lm_order).
"""

from __future__ import annotations

import os
import sys
import tempfile

from absl import app, flags

from experiments import evaluate_run as evaluation  # noqa: F401  (defines run_dir, manifest, lm_*)
from experiments.tune_lm_fusion import lm_cross_entropy

FLAGS = flags.FLAGS
flags.DEFINE_list("min_counts", ["1", "2", "3", "5"], "Pruning thresholds to compare (1 = unpruned).")
flags.DEFINE_string("pruning_json", None, "Result JSON.")


def compare(run_dir: str, manifest: str, lm_train_manifest: str | None, order: int, min_counts,
            lm_train_text: str | None = None) -> dict:
    from tf_todm.data.manifest import read_manifest
    from tf_todm.decoding.token_ngram import fit_token_lm, lm_training_texts, load_backoff, save_backoff
    from tf_todm.training.restore import load_run_tokenizer
    tokenizer = load_run_tokenizer(run_dir)
    lm = fit_token_lm(lm_training_texts(lm_train_manifest, lm_train_text), tokenizer, order)
    texts_by_domain = {}
    for u in read_manifest(manifest):
        texts_by_domain.setdefault(u.domain or "all", []).append(u.text)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tf_todm_lm_") as tmp:
        for min_count in min_counts:
            path = save_backoff(lm, os.path.join(tmp, f"lm{min_count}.json.gz"), min_count=min_count)
            shipped = load_backoff(path)
            rows.append({"min_count": min_count, "bytes": os.path.getsize(path),
                         "ngrams": sum(len(words) for table in shipped._tables for _, words, _ in table.values()),
                         "nats_per_token": lm_cross_entropy({order: shipped}, tokenizer, texts_by_domain)[order]})
    return {"run_dir": os.path.abspath(run_dir), "manifest": os.path.abspath(manifest),
            "lm_train_manifest": lm_train_manifest and os.path.abspath(lm_train_manifest),
            "lm_train_text": lm_train_text and os.path.abspath(lm_train_text), "order": order, "rows": rows}


def main(argv):
    del argv
    try:
        if not (FLAGS.run_dir and FLAGS.pruning_json and (FLAGS.lm_train_manifest or FLAGS.lm_train_text)):
            raise ValueError("--run_dir, --pruning_json and --lm_train_manifest and/or --lm_train_text are required")
        counts = [int(c) for c in FLAGS.min_counts]
        if not counts or min(counts) < 1:
            raise ValueError(f"--min_counts={FLAGS.min_counts}: expected integers >= 1")
        result = compare(FLAGS.run_dir, FLAGS.manifest, FLAGS.lm_train_manifest, FLAGS.lm_order, counts,
                         FLAGS.lm_train_text)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.pruning_json)), exist_ok=True)
    evaluation.write_result(result, FLAGS.pruning_json)
    for r in result["rows"]:
        print(f"min_count {r['min_count']}: {r['bytes'] / 1024:.0f} KiB, {r['ngrams']} n-grams, nats/token "
              + ", ".join(f"{d} {v:.3f}" for d, v in r["nats_per_token"].items()))
    print(f"wrote {FLAGS.pruning_json}")


if __name__ == "__main__":
    app.run(main)
