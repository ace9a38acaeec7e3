#!/bin/bash
# Real-loop A/B of the training losses' path on the issue-3 recipe: 500 training steps each (tf.data
# pipeline live, no evals, no periodic checkpoints), interleaved: plain TF, OLD, XLA, plain TF, OLD.
# OLD = the same command in another checkout (default: /tmp/at_13ee892, the previous default).
#   bash experiments/ab_train_loop.sh [OLD_CHECKOUT] [OUTPUT_JSON]
set -euo pipefail
OLD=${1:-/tmp/at_13ee892}
OUT=${2:-artifacts/bench/train_loop_ab.json}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
COMMON="--flagfile=experiments/flags/single_45min.cfg --tokenizer=$ROOT/artifacts/single_45min_8h_keep10/tokenizer.model --corpus_dir=$ROOT/artifacts/corpus_8h --train=max_steps=500 --train=eval_every_steps=0 --train=checkpoint_every_steps=0"
run() { local name=$1 dir=$2; shift 2
  (cd "$dir" && "$PY" -m experiments.train_single $COMMON --out_dir="$WORK/$name" "$@" > "$WORK/$name.log" 2>&1)
  echo "$name done"; }
run tf_1 "$ROOT" --train=xla_loss=false
run old_1 "$OLD"
run xla_1 "$ROOT" --train=xla_loss=true
run tf_2 "$ROOT" --train=xla_loss=false
run old_2 "$OLD"
"$PY" - "$WORK" "$OUT" "$OLD" <<'PY'
import json, sys
work, out, old = sys.argv[1:4]
runs = {}
for name in ("tf_1", "old_1", "xla_1", "tf_2", "old_2"):
    d = json.load(open(f"{work}/{name}/train_summary.json"))
    runs[name] = {"elapsed_seconds": d["elapsed_seconds"], "steps": d["step"]}
mean = lambda *k: sum(runs[n]["elapsed_seconds"] for n in k) / len(k)
result = {"old_checkout": old, "order": list(runs), "runs": runs,
          "speedup_tf_over_old": mean("old_1", "old_2") / mean("tf_1", "tf_2"),
          "speedup_tf_over_xla": runs["xla_1"]["elapsed_seconds"] / mean("tf_1", "tf_2")}
json.dump(result, open(out, "w"), indent=1)
print(json.dumps(result, indent=1))
PY
