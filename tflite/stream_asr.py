"""Standalone streaming ASR over an exported tf_todm .tflite (the loop an Android app copies).

Depends only on ai_edge_litert, numpy and sentencepiece. Usage:
  python tflite/stream_asr.py model.tflite audio.npy|audio.raw(float32 16 kHz)
The sidecar `model.json` (same stem) gives chunk size, state names/shapes and the tokenizer file.
"""

import json
import os
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

BLANK = 0


def recognize(model_path, audio, max_symbols=5):
    """audio float32 [N] 16 kHz -> (token ids, text or None, per-chunk latencies s)."""
    with open(os.path.splitext(model_path)[0] + ".json") as f:
        side = json.load(f)
    info = side["streaming"]
    interp = Interpreter(model_path=model_path, num_threads=1)
    enc_step = interp.get_signature_runner("encoder_step")
    pred_step = interp.get_signature_runner("predictor_step")
    join_step = interp.get_signature_runner("joiner_step")
    zeros = lambda specs: {k: np.zeros(v["shape"], v["dtype"]) for k, v in specs.items()}
    enc_states, pred_states = zeros(info["encoder_states"]), zeros(info["predictor_states"])
    prime, chunk = info["prime_samples"], info["chunk_samples"]
    enc_states["pcm_cache"][0, :len(audio[:prime])] = audio[:prime]
    body = audio[prime:]
    n = max(1, -(-len(body) // chunk))
    body = np.concatenate([body, np.zeros(n * chunk - len(body), np.float32)]).astype(np.float32)
    pred = pred_step(token=np.array([BLANK], np.int32), **pred_states)
    pred_states = {k: pred[k] for k in pred_states}
    tokens, latencies = [], []
    for i in range(n):
        t0 = time.perf_counter()
        out = enc_step(audio=body[None, i * chunk:(i + 1) * chunk], **enc_states)
        enc_states = {k: out[k] for k in enc_states}
        for frame in out["enc_proj"][0]:
            for _ in range(max_symbols):
                logits = join_step(enc_proj=frame[None], pred_proj=pred["pred_proj"])["logits"]
                k = int(np.argmax(logits[0]))
                if k == BLANK:
                    break
                tokens.append(k)
                pred = pred_step(token=np.array([k], np.int32), **pred_states)
                pred_states = {kk: pred[kk] for kk in pred_states}
        latencies.append(time.perf_counter() - t0)
    text = None
    if side.get("tokenizer_file"):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=os.path.join(os.path.dirname(model_path), side["tokenizer_file"]))
        text = sp.decode(tokens)
    return tokens, text, latencies


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 1
    path = argv[2]
    audio = np.load(path) if path.endswith(".npy") else np.fromfile(path, np.float32)
    tokens, text, lat = recognize(argv[1], audio.astype(np.float32))
    print(json.dumps({"tokens": tokens, "text": text, "chunks": len(lat),
                      "latency_ms_median": 1000 * float(np.median(lat)), "rtf": sum(lat) / (len(audio) / 16000)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
