"""Checks that two corpora hold byte-identical splits (manifest and every audio file).

  python -m experiments.compare_corpus_splits --corpus_a=artifacts/corpus_8h \
      --corpus_b=artifacts/corpus_8h_flite8 --splits=dev,test --output_json=artifacts/corpus_8h_flite8/same_splits.json

Used when a corpus variant changes only the training split (`make_corpus --extra_train_voices`):
a result measured on its test split is then measured on the same speech. Exits 1 if any split
differs (the JSON names the first differing file).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from absl import app, flags

from tf_todm.atomic_files import write_json_atomic
from tf_todm.data.manifest import ManifestError, read_manifest

flags.DEFINE_string("corpus_a", None, "First corpus folder.")
flags.DEFINE_string("corpus_b", None, "Second corpus folder.")
flags.DEFINE_list("splits", ["dev", "test"], "Splits to compare.")
flags.DEFINE_string("output_json", None, "Where to write the result (optional).")
FLAGS = flags.FLAGS


def file_digest(path: str) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_files(corpus_dir: str, split: str) -> list[str]:
    """The split's manifest and the audio files it lists, as paths relative to `corpus_dir`."""
    manifest = f"{split}.jsonl"
    utterances = read_manifest(os.path.join(corpus_dir, manifest))
    return [manifest] + [os.path.relpath(u.audio_filepath, corpus_dir) for u in utterances]


def compare_split(corpus_a: str, corpus_b: str, split: str) -> dict:
    """{"split", "files", "identical", "first_difference"} for one split of two corpora."""
    files_a, files_b = split_files(corpus_a, split), split_files(corpus_b, split)
    result = {"split": split, "files": len(files_a), "identical": True, "first_difference": None}
    if files_a != files_b:
        result.update(identical=False, first_difference=f"{split}.jsonl lists different audio files")
        return result
    for rel in files_a:
        if file_digest(os.path.join(corpus_a, rel)) != file_digest(os.path.join(corpus_b, rel)):
            result.update(identical=False, first_difference=rel)
            break
    return result


def main(argv):
    del argv
    if not FLAGS.corpus_a or not FLAGS.corpus_b:
        sys.exit("error: --corpus_a and --corpus_b are required")
    try:
        splits = [compare_split(FLAGS.corpus_a, FLAGS.corpus_b, s) for s in FLAGS.splits]
    except ManifestError as e:
        sys.exit(f"error: {e}")
    result = {"corpus_a": FLAGS.corpus_a, "corpus_b": FLAGS.corpus_b, "splits": splits,
              "identical": all(s["identical"] for s in splits)}
    print(json.dumps(result, indent=1))
    if FLAGS.output_json:
        write_json_atomic(FLAGS.output_json, result)
    sys.exit(0 if result["identical"] else 1)


if __name__ == "__main__":
    app.run(main)
