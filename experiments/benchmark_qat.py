"""Effect of quantization-aware fine-tuning (tf_todm.export.qat) on full-int8 accuracy, side by side.

  python -m experiments.benchmark_qat --out=artifacts/bench/qat.json

Per seed: a tiny streaming Transducer (tf_todm.models.testing.tiny_config, LSTM predictor) is
trained --train_steps float steps on --train_batches fixed tiny batches (random features, random
labels: the model memorises them), then copied into two arms fine-tuned for --finetune_steps more
steps from the same weights, same batches, same learning rate:
  control  plain float fine-tuning (qat_finetune with weight_bits=activation_bits=None)
  qat      fake-quantized per-channel int8 weights + int8 activations (qat_finetune defaults)
Both arms are exported as features-input streaming models (`StreamingTransducer`), converted to
full_int8 with the same calibration data (the training features), and streamed in LiteRT over
the training utterances (the data the model fits) and held-out ones. Reported per arm: float
loss, int8-vs-float relative L2 of the encoder output (enc_proj), joiner-logit RMSE and relative
error on the float stream's joiner inputs, and greedy-token agreement of the int8 stream with the
float TF stream. Ratios qat / control are measured in the same run.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

_OUT = flags.DEFINE_string("out", "artifacts/bench/qat.json", "JSON result path.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (model init + data).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Float training steps before the two arms.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", 100, "Fine-tuning steps of each arm.")
_TRAIN_BATCHES = flags.DEFINE_integer("train_batches", 4, "Fixed training batches (3 utterances each).")
_FRAMES = flags.DEFINE_integer("frames", 48, "Feature frames of the longest utterance of a batch.")
_LR = flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (training and fine-tuning).")


def build_model(seed: int):
    import tensorflow as tf

    from tf_todm.models.testing import tiny_config
    from tf_todm.models.transducer import Transducer

    tf.keras.utils.set_random_seed(seed)
    return Transducer(tiny_config(chunk_size=2, left_context=4, causal_conv=True, predictor_type="lstm",
                                  dropout=0.0))


def copy_model(model, seed: int):
    clone = build_model(seed)
    for dst, src in zip(clone.weights, model.weights):
        dst.assign(src.numpy())
    return clone


def utterances(batches):
    """[(features [T, F] valid frames only)] of every utterance of the batches."""
    return [b["features"][i, : b["feature_lengths"][i]] for b in batches for i in range(len(b["labels"]))]


def stream_errors(model, calib_feats, eval_feats) -> dict:
    """Converts `model` to full_int8 and compares the LiteRT stream with the float TF stream."""
    import numpy as np
    import tensorflow as tf

    from tf_todm.export import convert, op_report, streaming
    from tf_todm.export.runtime import LiteRTModel

    module = streaming.StreamingTransducer(streaming.make_adapter(model))
    rep = streaming.representative_dataset(module, calib_feats, max_samples_per_signature=300)
    int8 = convert.convert(module.signatures(), "full_int8", rep)
    op_report.check_builtin_only(int8)
    lite = LiteRTModel(int8)
    enc_err, enc_ref, logit_sq, logit_ref_sq, logit_n, same_tokens = 0.0, 0.0, 0.0, 0.0, 0, 0
    cosines = []
    for feats in eval_feats:
        rec = []
        tokens_ref, enc_float = streaming.stream_module(module, feats, record=rec)
        states, pred_states = module.initial_states()
        encs = []
        for sig, feed in rec:
            if sig == "encoder_step":
                out = lite.run("encoder_step", features=feed["features"], **states)
                states = {k: out[k] for k in states}
                encs.append(out["enc_proj"][0])
            elif sig == "joiner_step":
                want = module.joiner_step(**{k: tf.constant(v) for k, v in feed.items()})["logits"].numpy()
                got = lite.run("joiner_step", **feed)["logits"]
                logit_sq += float(np.sum((got - want) ** 2))
                logit_ref_sq += float(np.sum(want ** 2))
                logit_n += want.size
        enc_int8 = np.concatenate(encs)
        enc_err += float(np.sum((enc_int8 - enc_float) ** 2))
        enc_ref += float(np.sum(enc_float ** 2))
        num = np.sum(enc_int8 * enc_float, axis=1)
        den = np.linalg.norm(enc_int8, axis=1) * np.linalg.norm(enc_float, axis=1) + 1e-12
        cosines.extend((num / den).tolist())
        tokens_int8 = _manual_greedy(lite, module, feats)
        same_tokens += int(tokens_int8 == tokens_ref)
    return {"encoder_rel_l2": (enc_err / enc_ref) ** 0.5, "encoder_cosine_mean": float(np.mean(cosines)),
            "joiner_logit_rmse": (logit_sq / logit_n) ** 0.5, "joiner_logit_rel_l2": (logit_sq / logit_ref_sq) ** 0.5,
            "token_agreement": same_tokens / len(eval_feats), "int8_bytes": len(int8)}


def _manual_greedy(lite, module, feats, max_symbols: int = 5):
    """Greedy streaming decode through LiteRT (mirrors `streaming.stream_module`)."""
    import numpy as np

    enc_states, pred_states = module.initial_states()
    n = max(1, -(-feats.shape[0] // module.chunk_frames))
    padded = np.zeros((n * module.chunk_frames, feats.shape[1]), np.float32)
    padded[: feats.shape[0]] = feats
    pred = lite.run("predictor_step", token=np.array([0], np.int32), **pred_states)
    pred_states = {k: pred[k] for k in pred_states}
    tokens = []
    for i in range(n):
        out = lite.run("encoder_step", features=padded[None, i * module.chunk_frames:(i + 1) * module.chunk_frames],
                       **enc_states)
        enc_states = {k: out[k] for k in enc_states}
        enc = out["enc_proj"][0]
        for t in range(enc.shape[0]):
            for _ in range(max_symbols):
                k = int(np.argmax(lite.run("joiner_step", enc_proj=enc[t:t + 1], pred_proj=pred["pred_proj"])["logits"][0]))
                if k == 0:
                    break
                tokens.append(k)
                pred = lite.run("predictor_step", token=np.array([k], np.int32), **pred_states)
                pred_states = {kk: pred[kk] for kk in pred_states}
    return tokens


def run_seed(seed: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from tf_todm.export import qat
    from tf_todm.models.testing import tiny_batch

    frames = _FRAMES.value
    train = [qat.make_batch(*tiny_batch(seed * 100 + i, t=frames)) for i in range(_TRAIN_BATCHES.value)]
    held = [qat.make_batch(*tiny_batch(seed * 100 + 50 + i, t=frames)) for i in range(2)]
    model = build_model(seed)
    start = time.perf_counter()
    pre = qat.qat_finetune(model, train, _TRAIN_STEPS.value, learning_rate=_LR.value, weight_bits=None,
                           activation_bits=None)
    train_s = time.perf_counter() - start

    def float_loss(m, batches):
        return float(np.mean([qat.transducer_loss(m, {k: tf.constant(v) for k, v in b.items()}) for b in batches]))

    row = {"seed": seed, "train_steps": _TRAIN_STEPS.value, "train_seconds": train_s,
           "train_loss_first_last": [pre["losses"][0], pre["losses"][-1]], "arms": {}}
    calib = utterances(train)
    for arm, bits in (("control", None), ("qat", 8)):
        m = copy_model(model, seed)
        hist = qat.qat_finetune(m, train, _FINETUNE_STEPS.value, learning_rate=_LR.value, weight_bits=bits,
                                activation_bits=bits)
        result = {"finetune_seconds": hist["seconds"], "finetune_loss_last": hist["losses"][-1],
                  "float_loss_train": float_loss(m, train), "float_loss_held_out": float_loss(m, held)}
        result["train_utts"] = stream_errors(m, calib, calib)
        result["held_out_utts"] = stream_errors(m, calib, utterances(held))
        row["arms"][arm] = result
    for split in ("train_utts", "held_out_utts"):
        c, q = row["arms"]["control"][split], row["arms"]["qat"][split]
        row[f"ratio_qat_over_control_{split}"] = {
            k: q[k] / c[k] if c[k] else None for k in ("encoder_rel_l2", "joiner_logit_rmse", "joiner_logit_rel_l2")}
    return row


def format_table(rows) -> str:
    lines = [f"{'seed':>4} {'arm':<8} {'split':<9} {'float loss':>10} {'enc relL2':>10} {'enc cos':>8} "
             f"{'logit RMSE':>10} {'logit relL2':>11} {'tok agree':>9}"]
    for r in rows:
        for arm in ("control", "qat"):
            a = r["arms"][arm]
            for split, loss_key in (("train_utts", "float_loss_train"), ("held_out_utts", "float_loss_held_out")):
                s = a[split]
                lines.append(f"{r['seed']:>4} {arm:<8} {split[:-5]:<9} {a[loss_key]:>10.3f} {s['encoder_rel_l2']:>10.4f} "
                             f"{s['encoder_cosine_mean']:>8.4f} {s['joiner_logit_rmse']:>10.4f} "
                             f"{s['joiner_logit_rel_l2']:>11.4f} {s['token_agreement']:>9.2f}")
        for split in ("train_utts", "held_out_utts"):
            ratio = r[f"ratio_qat_over_control_{split}"]
            lines.append(f"{r['seed']:>4} qat/ctrl {split[:-5]:<9} {'':>10} {ratio['encoder_rel_l2']:>10.3f} {'':>8} "
                         f"{ratio['joiner_logit_rmse']:>10.3f} {ratio['joiner_logit_rel_l2']:>11.3f}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 1
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        print(f"error: --seeds={','.join(_SEEDS.value)}: expected integers", file=sys.stderr)
        return 1
    if _TRAIN_STEPS.value <= 0 or _FINETUNE_STEPS.value <= 0:
        print("error: --train_steps and --finetune_steps must be > 0", file=sys.stderr)
        return 1
    start = time.perf_counter()
    rows = [run_seed(s) for s in seeds]
    result = {"argv": sys.argv, "settings": {"seeds": seeds, "train_steps": _TRAIN_STEPS.value,
                                            "finetune_steps": _FINETUNE_STEPS.value,
                                            "train_batches": _TRAIN_BATCHES.value, "frames": _FRAMES.value,
                                            "learning_rate": _LR.value, "mode": "full_int8"},
              "rows": rows, "wall_time_s": time.perf_counter() - start}
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(result, f, indent=1)
    print(format_table(rows))
    print(f"wrote {_OUT.value} ({result['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
