"""Generates the default synthetic corpus and prints its summary table.

  python -m experiments.make_corpus --out_dir=data/default --hours=1 --seed=0 [--num_workers=2]
      [--extra_train_voices=flite8]

Writes {train,dev,test}.jsonl, audio/ and summary.json under --out_dir (see
tf_todm.data.synthetic). Bad flags or a missing TTS engine print one line and exit 1.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from tf_todm.data import synthetic

FLAGS = flags.DEFINE_string("out_dir", None, "Output folder of the corpus.")
_HOURS = flags.DEFINE_float("hours", 1.0, "Target total hours (train 80%, dev 10%, test 10%).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical audio and manifests.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", None, "Worker processes (default: CPU count).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Print a progress line with rate and ETA.")
_JSON = flags.DEFINE_bool("json", False, "Also print the summary as JSON.")
_EXTRA = flags.DEFINE_list(
    "extra_train_voices", [],
    "Voices added to the train split only (dev and test stay byte-identical): voice names such as "
    f"flite:awb:r92:f125, or a set name from {sorted(synthetic.EXTRA_TRAIN_VOICE_SETS)}.")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --flags only", file=sys.stderr)
        return 1
    if not FLAGS.value:
        print("error: --out_dir is required", file=sys.stderr)
        return 1
    if _NUM_WORKERS.value is not None and _NUM_WORKERS.value < 1:
        print(f"error: --num_workers must be >= 1, got {_NUM_WORKERS.value}", file=sys.stderr)
        return 1
    try:
        config = synthetic.CorpusConfig(
            extra_train_voices=synthetic.resolve_extra_train_voices(_EXTRA.value))
        summary = synthetic.generate_corpus(FLAGS.value, _HOURS.value, _SEED.value,
                                            num_workers=_NUM_WORKERS.value, progress=_PROGRESS.value,
                                            config=config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(synthetic.format_summary(summary))
    if _JSON.value:
        print(json.dumps(summary, sort_keys=True))
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
