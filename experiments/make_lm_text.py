"""Writes a generated corpus's training text (spoken train transcripts + text-only train sentences).

  python -m experiments.make_lm_text --corpus_dir=artifacts/corpus_8h_flite8 \
      --out=artifacts/corpus_8h_flite8/lm_text.txt [--shared_ngram=5]

One sentence per line (UTF-8), for `experiments.evaluate_run --lm_train_text` and
`experiments.tune_lm_fusion --lm_train_text`; `<out>.json` holds the counts per domain (see
`tf_todm.data.corpus_text`). A corpus whose manifests do not match its rebuilt sentence pools
prints one line naming the manifest and exits 1.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

_CORPUS_DIR = flags.DEFINE_string("corpus_dir", None, "Corpus folder made by experiments.make_corpus.")
_OUT = flags.DEFINE_string("out", None, "Text file to write (one sentence per line); counts go to <out>.json.")
_SHARED_NGRAM = flags.DEFINE_integer("shared_ngram", 5, "Drop text-only open-domain sentences sharing a word "
                                     "n-gram of this length with a dev or test pool sentence.", lower_bound=1)


def main(argv) -> int:
    from tf_todm.atomic_files import write_text_atomic
    from tf_todm.data.corpus_text import corpus_train_text
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    if not _CORPUS_DIR.value or not _OUT.value:
        print("error: --corpus_dir and --out are required", file=sys.stderr)
        return 1
    try:
        sentences, stats = corpus_train_text(_CORPUS_DIR.value, _SHARED_NGRAM.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats["command"] = " ".join(["python -m experiments.make_lm_text"] + sys.argv[1:])
    write_text_atomic(_OUT.value, "".join(s + "\n" for s in sentences))
    write_text_atomic(_OUT.value + ".json", json.dumps(stats, indent=1) + "\n")
    for domain, d in stats["domains"].items():
        print(f"{domain}: {d['spoken']} spoken + {d['text_only'] - d['dropped']} text-only "
              f"({d['dropped']} dropped for a shared {stats['shared_ngram']}-gram with dev/test) = {d['kept']}")
    print(f"{stats['sentences']} sentences, {stats['words']} words -> {_OUT.value}")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
