"""Tune shallow fusion of a token n-gram LM on dev: WER over a grid of LM weights x length bonuses.

    python -m experiments.tune_lm_fusion --run_dir=artifacts/single_45min_8h \
        --manifest=artifacts/corpus_8h/dev.jsonl --lm_train_manifest=artifacts/corpus_8h/train.jsonl \
        --beam_size=4 --max_utterances=200 --tune_json=artifacts/single_45min_8h/lm_fusion_dev.json

The LM (`tf_todm.decoding.token_ngram`, order `--lm_order`) is fitted on training text only: the
training transcripts (`--lm_train_manifest`) and/or the corpus train text (`--lm_train_text`, from
`experiments.make_lm_text`). Every grid point decodes the same dev utterances (`--max_utterances` of them, stratified by
domain and voice, so the subset keeps the split's mix; 0 = all), next to greedy search and beam search without
LM. Writes JSON (rows per setting, per domain; the best setting by dev WER; the LM's cross-entropy
on the whole dev manifest per domain for orders 2, 4, 8 and `--lm_order`) and a heat-map PNG
next to it. Apply the chosen setting to the test split with `experiments.evaluate_run --lm_weight=...
--lm_length_bonus=...`; the test split is never decoded here.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

from experiments import evaluate_run as evaluation  # reuses its flags: run_dir, manifest, beam_size, lm_*

FLAGS = flags.FLAGS
flags.DEFINE_list("lm_weights", ["0.2", "0.4", "0.6", "0.8"], "Grid of LM weights.")
flags.DEFINE_list("lm_length_bonuses", ["0.0", "0.3", "0.6", "0.9"], "Grid of per-token length bonuses.")
flags.DEFINE_string("tune_json", None, "Result JSON (default: <run_dir>/lm_fusion_<manifest name>.json).")


def best_setting(rows) -> dict:
    """The row with the lowest WER among fused rows (ties: the smaller weight, then bonus)."""
    fused = [r for r in rows if r["weight"] > 0]
    if not fused:
        raise ValueError("best_setting: no fused rows")
    return min(fused, key=lambda r: (round(r["wer"], 12), r["weight"], r["length_bonus"]))


def plot_grid(rows, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fused = [r for r in rows if r["weight"] > 0]
    weights = sorted({r["weight"] for r in fused})
    bonuses = sorted({r["length_bonus"] for r in fused})
    grid = np.full((len(weights), len(bonuses)), np.nan)
    for r in fused:
        grid[weights.index(r["weight"]), bonuses.index(r["length_bonus"])] = 100 * r["wer"]
    fig, ax = plt.subplots(figsize=(1.2 * len(bonuses) + 2.5, 0.8 * len(weights) + 1.8))
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    for i in range(len(weights)):
        for j in range(len(bonuses)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(bonuses)), [f"{b:g}" for b in bonuses])
    ax.set_yticks(range(len(weights)), [f"{w:g}" for w in weights])
    ax.set_xlabel("length bonus (nats per token)")
    ax.set_ylabel("LM weight")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, label="dev WER %")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lm_cross_entropy(lms: dict, tokenizer, texts_by_domain: dict) -> dict:
    """{order: {domain: nats per token}} of the token LMs `lms` ({order: TokenNgramLM}) on each
    domain's texts (end-of-sentence counted as a token)."""
    ids_by_domain = {domain: tokenizer.encode(texts) for domain, texts in sorted(texts_by_domain.items())}
    return {order: {domain: -sum(lm.sequence_log_prob(seq) for seq in ids) / sum(len(seq) + 1 for seq in ids)
                    for domain, ids in ids_by_domain.items()}
            for order, lm in sorted(lms.items())}


def tune(run_dir: str, manifest: str, lm_train_manifest: str | None, weights, bonuses, beam_size: int = 4,
         lm_order: int = 6, max_utterances: int = 200, batch_size: int = 16, average_last: int = 1,
         lm_train_text: str | None = None) -> dict:
    from tf_todm.data.manifest import read_manifest, spread_subset
    from tf_todm.decoding import ShallowFusion, fit_token_lm
    from tf_todm.decoding.token_ngram import lm_training_texts
    from tf_todm.training.restore import load_run_tokenizer, load_trained_model
    if beam_size < 2:
        raise ValueError(f"--beam_size={beam_size}: LM fusion needs beam search (>= 2)")
    every_dev = read_manifest(manifest)
    texts_by_domain, utterances_by_domain = {}, {}
    for u in every_dev:
        texts_by_domain.setdefault(u.domain or "all", []).append(u.text)
    for u in spread_subset(every_dev, max_utterances, key=lambda u: (u.domain, u.speaker)):
        utterances_by_domain.setdefault(u.domain or "all", []).append(u)
    tokenizer = load_run_tokenizer(run_dir)
    train_texts = lm_training_texts(lm_train_manifest, lm_train_text)
    lms = {order: fit_token_lm(train_texts, tokenizer, order) for order in sorted({2, 4, lm_order, 8})}
    cross_entropy = lm_cross_entropy(lms, tokenizer, texts_by_domain)
    model = load_trained_model(run_dir, average_last=average_last)
    settings = [("greedy", 1, 0.0, 0.0), ("beam", beam_size, 0.0, 0.0)]
    settings += [("fused", beam_size, float(w), float(b)) for w in weights for b in bonuses]
    rows, start = [], time.perf_counter()
    for index, (kind, beam, weight, bonus) in enumerate(settings):
        fusion = ShallowFusion(lms[lm_order], weight, bonus) if weight > 0 else None
        pairs_by_domain = {domain: evaluation.decode_utterances(model, tokenizer, utts, batch_size, beam, fusion)
                           for domain, utts in sorted(utterances_by_domain.items())}
        row = dict(kind=kind, beam_size=beam, weight=weight, length_bonus=bonus,
                   **evaluation.score([pair for pairs in pairs_by_domain.values() for pair in pairs]),
                   domains={domain: evaluation.score(pairs) for domain, pairs in pairs_by_domain.items()})
        rows.append(row)
        elapsed = time.perf_counter() - start
        logging.info("%d/%d %s beam=%d weight=%.2f bonus=%.2f: dev WER %.1f%% | %.0f s per setting | ETA %.0f s",
                     index + 1, len(settings), kind, beam, weight, bonus, 100 * row["wer"],
                     elapsed / (index + 1), elapsed / (index + 1) * (len(settings) - index - 1))
    return {"run_dir": os.path.abspath(run_dir), "manifest": os.path.abspath(manifest),
            "lm_train_manifest": lm_train_manifest and os.path.abspath(lm_train_manifest),
            "lm_train_text": lm_train_text and os.path.abspath(lm_train_text), "lm_order": lm_order, "average_last": average_last,
            "num_utterances": sum(map(len, utterances_by_domain.values())), "lm_dev_nats_per_token": cross_entropy,
            "rows": rows, "best": best_setting(rows), "seconds": time.perf_counter() - start}


def main(argv):
    del argv
    from tf_todm.data.manifest import ManifestError
    from tf_todm.training.restore import RunFolderError
    if not FLAGS.run_dir or not (FLAGS.lm_train_manifest or FLAGS.lm_train_text):
        print("error: --run_dir and --lm_train_manifest (or --lm_train_text) are required", file=sys.stderr)
        sys.exit(1)
    try:
        weights = [float(w) for w in FLAGS.lm_weights]
        bonuses = [float(b) for b in FLAGS.lm_length_bonuses]
        if not weights or min(weights) <= 0:
            raise ValueError(f"--lm_weights={FLAGS.lm_weights}: expected weights > 0")
        result = tune(FLAGS.run_dir, FLAGS.manifest, FLAGS.lm_train_manifest, weights, bonuses,
                      FLAGS.beam_size, FLAGS.lm_order, FLAGS.max_utterances, FLAGS.batch_size,
                      FLAGS.average_last, FLAGS.lm_train_text)
    except (ValueError, RunFolderError, ManifestError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    out = evaluation.write_result(result, FLAGS.tune_json or
                                  evaluation.default_output(FLAGS.run_dir, FLAGS.manifest, "lm_fusion"))
    plot_grid(result["rows"], os.path.splitext(out)[0] + ".png",
              f"dev WER, {result['num_utterances']} utterances, beam {result['rows'][1]['beam_size']}, "
              f"{result['lm_order']}-gram token LM")
    print(f"{'setting':<8} {'weight':>6} {'bonus':>6} {'WER':>7} " +
          " ".join(f"{d:>9}" for d in result["rows"][0]["domains"]))
    for r in result["rows"]:
        print(f"{r['kind']:<8} {r['weight']:6.2f} {r['length_bonus']:6.2f} {100 * r['wer']:6.1f}% " +
              " ".join(f"{100 * v['wer']:8.1f}%" for v in r["domains"].values()))
    b = result["best"]
    print(f"best: --lm_weight={b['weight']:g} --lm_length_bonus={b['length_bonus']:g} (dev WER {100 * b['wer']:.1f}%)")
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
