"""Standalone streaming ASR over an exported tf_todm bundle (the loop an Android app copies).

Depends only on ai_edge_litert, numpy and sentencepiece (plus the Python standard library).

Usage:
  python tflite/stream_asr.py --model bundle/name.full_int8.tflite --wav speech.wav [--json] [--beam]

Files, all beside the model (the sidecar `name.full_int8.json` names them):
  `streaming`      chunk_samples (new PCM samples per call), prime_samples (the first samples of
                   the stream that fill `pcm_cache` before the first call), the state names, shapes
                   and dtypes of encoder_step / predictor_step (and of frontend_step).
  `frontend_file`  float32 log-mel front end, `frontend_step(audio [1, chunk_samples], pcm_cache
                   [1, prime_samples]) -> {features [1, chunk_frames, F], pcm_cache}`; then
                   encoder_step takes `features`. Absent/null in the older layout, where
                   encoder_step takes the PCM chunk itself and carries `pcm_cache` as a state.
  `tokenizer_file` SentencePiece model (or null: token ids only).
  `lm`             (optional) the bundle's token LM: {file (gzipped JSON, backoff form), weight,
                   length_bonus, beam_size}; `--beam` decodes with it.

Per chunk: [front end] -> encoder_step (states in, states out) -> for every encoder frame, greedy
transducer search: joiner_step(enc frame, predictor output); argmax == blank -> next frame, else emit
the token and run predictor_step on it (at most `max_symbols` tokens per frame). Every model call
takes and returns its states explicitly; the app keeps them between calls.

With `--beam` (or `StreamingAsr(beam_size=N)`): modified beam search, one symbol per frame. Each
hypothesis keeps its token tuple, log-score, predictor states and output. Per frame, every
hypothesis x every token is scored (joiner log-softmax + LM: weight * log p_LM(token | tokens) +
length_bonus for non-blank), the best N pairs survive, equal token tuples merge (log-add); the
final pick adds weight * log p_LM(end). The LM file lists, per order k and seen context c (the last
k-1 tokens, padded with begin id -1), a back-off weight and the seen next tokens' log-probabilities;
a token's log-probability is read bottom-up (`TokenLM.log_probs`).
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

BLANK = 0


class StreamAsrError(ValueError):
    """Unusable input (wav, sidecar, bundle file); one line naming the file and what was expected."""


# ---------------------------------------------------------------- wav reading


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path, sample_rate_hz=16000):
    """Mono WAV (16/32-bit PCM or 32-bit float) at `sample_rate_hz` -> float32 [N] in [-1, 1]."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise StreamAsrError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise StreamAsrError(f"{path}: not a RIFF/WAVE file")
    fmt, samples, pos = None, None, 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt " and len(body) >= 16:
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == _EXTENSIBLE and len(body) >= 26:  # sub-format GUID starts with the format code
                fmt = (struct.unpack("<H", body[24:26])[0],) + fmt[1:]
        elif cid == b"data":
            samples = body if size != 0xFFFFFFFF else data[pos + 8:]  # streamed wavs leave size unset
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise StreamAsrError(f"{path}: WAVE file without a 'fmt ' or 'data' chunk")
    code, channels, rate, _, _, bits = fmt
    if channels != 1:
        raise StreamAsrError(f"{path}: {channels} channels; expected mono (sox in.wav -c 1 out.wav)")
    if rate != sample_rate_hz:
        raise StreamAsrError(f"{path}: sample rate {rate} Hz; expected {sample_rate_hz} Hz "
                             f"(sox in.wav -r {sample_rate_hz} out.wav)")
    kinds = {(_PCM, 16): ("<i2", 32768.0), (_PCM, 32): ("<i4", 2147483648.0), (_FLOAT, 32): ("<f4", 1.0)}
    if (code, bits) not in kinds:
        raise StreamAsrError(f"{path}: sample format {code} with {bits} bits; expected 16/32-bit PCM or 32-bit float")
    dtype, scale = kinds[(code, bits)]
    width = bits // 8
    audio = np.frombuffer(samples[: len(samples) // width * width], dtype).astype(np.float32) / np.float32(scale)
    if audio.size == 0:
        raise StreamAsrError(f"{path}: no samples")
    return audio


# ---------------------------------------------------------------- the app loop


def _zeros(specs):
    return {name: np.zeros(spec["shape"], np.dtype(spec["dtype"])) for name, spec in specs.items()}


class TokenLM:
    """The bundle's token n-gram LM (gzipped JSON, format tf_todm-token-ngram-backoff/1)."""

    def __init__(self, path):
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, EOFError, json.JSONDecodeError) as e:
            raise StreamAsrError(f"{path}: not a gzipped JSON token LM ({e})") from None
        if not isinstance(data, dict) or data.get("format") != "tf_todm-token-ngram-backoff/1":
            raise StreamAsrError(f"{path}: not a tf_todm-token-ngram-backoff/1 LM")
        self.order, self.vocab_size, self.end = data["order"], data["vocab_size"], data["end_id"]
        self.begin = data["begin_id"]
        self.tables = [{tuple(c): (bow, np.asarray(w, np.int64), np.asarray(lp)) for c, bow, w, lp in rows}
                       for rows in data["orders"]]
        self.cache = {}

    def log_probs(self, history):
        """float64 [vocab_size + 1]: log p(token | history) per id (blank -inf), end-of-sentence last."""
        n = self.order - 1
        context = ((self.begin,) * n + tuple(history))[len(history):]
        if context not in self.cache:
            logs = np.full(self.vocab_size + 1, -np.log(self.vocab_size))
            for k in range(1, self.order + 1):
                entry = self.tables[k - 1].get(context[n - (k - 1):])
                if entry is not None:
                    logs = logs + entry[0]
                    logs[entry[1]] = entry[2]
            logs[BLANK] = -np.inf
            self.cache[context] = logs
        return self.cache[context]


def _log_softmax(logits):
    x = np.asarray(logits, np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


class StreamingAsr:
    """One loaded bundle model. `recognize(audio)` streams a whole clip; an app would instead call
    `start()` once and `feed_chunk(chunk)` for every `chunk_samples` block from the microphone.

    Args:
      model_path: `<name>.<mode>.tflite`; its sidecar `<name>.<mode>.json` must be beside it.
      num_threads: interpreter threads. max_symbols: cap on tokens emitted per encoder frame (greedy).
      beam_size: 1 = greedy; N > 1 = beam search with the bundle's LM if it ships one (sidecar `lm`;
        `use_lm=False` leaves it out); 0 = the beam size the sidecar's `lm` records.
    """

    def __init__(self, model_path, num_threads=1, max_symbols=5, beam_size=1, use_lm=True):
        side_path = os.path.splitext(model_path)[0] + ".json"
        folder = os.path.dirname(os.path.abspath(model_path))
        try:
            with open(side_path) as f:
                self.sidecar = json.load(f)
        except OSError:
            raise StreamAsrError(f"{side_path}: sidecar not found beside the model") from None
        except json.JSONDecodeError as e:
            raise StreamAsrError(f"{side_path}:{e.lineno}: not valid JSON ({e.msg})") from None
        info = self.sidecar.get("streaming")
        for key in ("encoder_states", "predictor_states", "prime_samples", "chunk_samples"):
            if not isinstance(info, dict) or info.get(key) is None:
                raise StreamAsrError(f"{side_path}: missing field 'streaming.{key}'")
        self.info = info
        self.sample_rate_hz = int(self.sidecar.get("sample_rate_hz", 16000))
        self.blank = int(self.sidecar.get("blank_id", BLANK))
        self.prime = int(info["prime_samples"])
        self.chunk = int(info["chunk_samples"])
        self.max_symbols = int(max_symbols)
        self.encoder_input = info.get("encoder_input", "audio")

        def load(path, signatures):
            if not os.path.isfile(path):
                raise StreamAsrError(f"{side_path}: model file {os.path.basename(path)!r} not found beside it")
            interp = Interpreter(model_path=path, num_threads=num_threads)
            have = interp.get_signature_list()
            missing = [s for s in signatures if s not in have]
            if missing:
                raise StreamAsrError(f"{path}: no signature {missing[0]!r} (has {sorted(have)})")
            return [interp.get_signature_runner(s) for s in signatures]

        self.encoder_step, self.predictor_step, self.joiner_step = load(
            model_path, ("encoder_step", "predictor_step", "joiner_step"))
        # New layout: a separate float front end turns PCM into log-mel features.
        self.frontend_step = None
        if self.sidecar.get("frontend_file"):
            (self.frontend_step,) = load(os.path.join(folder, self.sidecar["frontend_file"]), ("frontend_step",))
            self.frontend_input = info.get("frontend_input", "audio")
            self.frontend_state_specs = info.get("frontend_states") or {
                "pcm_cache": {"shape": [1, self.prime], "dtype": "float32"}}
        elif self.encoder_input != "audio":
            raise StreamAsrError(f"{side_path}: encoder_step takes {self.encoder_input!r} but 'frontend_file' is not set")
        self.sp = None
        if self.sidecar.get("tokenizer_file"):
            import sentencepiece as spm

            tok = os.path.join(folder, self.sidecar["tokenizer_file"])
            if not os.path.isfile(tok):
                raise StreamAsrError(f"{side_path}: tokenizer_file {self.sidecar['tokenizer_file']!r} not found beside it")
            self.sp = spm.SentencePieceProcessor(model_file=tok)
        lm_info = self.sidecar.get("lm") if use_lm else None
        if beam_size == 0:
            if not lm_info:
                raise StreamAsrError(f"{side_path}: no 'lm' field, so no recorded beam size; give --beam_size")
            beam_size = int(lm_info["beam_size"])
        self.beam_size = int(beam_size)
        self.lm, self.lm_weight, self.lm_bonus = None, 0.0, 0.0
        if lm_info and self.beam_size > 1:
            lm_path = os.path.join(folder, lm_info["file"])
            if not os.path.isfile(lm_path):
                raise StreamAsrError(f"{side_path}: lm file {lm_info['file']!r} not found beside it")
            self.lm = TokenLM(lm_path)
            self.lm_weight, self.lm_bonus = float(lm_info["weight"]), float(lm_info["length_bonus"])

    def start(self, head):
        """Resets all states; `head` = the first `prime_samples` samples of the stream (fewer: zero-filled)."""
        self.enc_states = _zeros(self.info["encoder_states"])
        self.pred_states = _zeros(self.info["predictor_states"])
        pcm_cache = np.zeros([1, self.prime], np.float32)
        head = np.asarray(head, np.float32)[: self.prime]
        pcm_cache[0, : len(head)] = head
        if self.frontend_step is not None:
            self.front_states = _zeros(self.frontend_state_specs)
            self.front_states["pcm_cache"] = pcm_cache
        elif "pcm_cache" in self.enc_states:  # old layout: the cache is an encoder state
            self.enc_states["pcm_cache"] = pcm_cache
        self.tokens = []
        # the predictor starts from blank (its "start of sequence")
        self.pred = self._predict(self.blank)
        # beam search: token tuple -> (log-score, predictor states, predictor output)
        self.hyps = {(): (0.0, self.pred_states, self.pred)}

    def _predict(self, token, states=None):
        """Runs predictor_step; with `states` returns (output, new states), else updates self's."""
        out = self.predictor_step(token=np.array([token], np.int32), **(states or self.pred_states))
        new_states = {k: out[k] for k in self.pred_states}
        if states is not None:
            return out["pred_proj"], new_states
        self.pred_states = new_states
        return out["pred_proj"]

    def _fusion(self, seq):
        """LM scores added to the joiner's log-probabilities after `seq` (blank gets 0)."""
        scores = self.lm_weight * self.lm.log_probs(seq)[: self.lm.end] + self.lm_bonus
        scores[self.blank] = 0.0
        return scores

    def _beam_frame(self, frame):
        """One frame of modified beam search over self.hyps."""
        keys = list(self.hyps)
        scores = []
        for seq in keys:
            logp = _log_softmax(self.joiner_step(enc_proj=frame[None], pred_proj=self.hyps[seq][2])["logits"][0])
            scores.append(self.hyps[seq][0] + logp + (self._fusion(seq) if self.lm is not None else 0.0))
        scores = np.stack(scores)
        new = {}
        for index in np.argsort(-scores, axis=None, kind="stable")[: self.beam_size]:
            i, token = divmod(int(index), scores.shape[1])
            seq, (_, states, pred) = keys[i], self.hyps[keys[i]]
            total = scores[i, token]
            if token != self.blank:
                seq = seq + (token,)
                if seq not in new:
                    pred, states = self._predict(token, states)
            if seq in new:  # equal token sequences merge; the first keeps its predictor
                total, states, pred = np.logaddexp(new[seq][0], total), new[seq][1], new[seq][2]
            new[seq] = (total, states, pred)
        self.hyps = new

    def best(self):
        """Token ids of the best hypothesis so far (beam: with the LM's end-of-sentence score)."""
        if self.beam_size == 1:
            return list(self.tokens)
        end = (lambda s: self.lm_weight * self.lm.log_probs(s)[self.lm.end]) if self.lm is not None else (lambda s: 0.0)
        return list(max(self.hyps, key=lambda s: self.hyps[s][0] + end(s)))

    def feed_chunk(self, chunk):
        """chunk float32 [chunk_samples] new PCM samples -> the tokens emitted for it (list of ids;
        beam search emits nothing until `best()`, whose answer may still change)."""
        x = np.asarray(chunk, np.float32).reshape(1, self.chunk)
        if self.frontend_step is not None:
            out = self.frontend_step(**{self.frontend_input: x}, **self.front_states)
            self.front_states = {k: out[k] for k in self.front_states}
            x = out["features"]
        out = self.encoder_step(**{self.encoder_input: x}, **self.enc_states)
        self.enc_states = {k: out[k] for k in self.enc_states}
        emitted = []
        for frame in out["enc_proj"][0]:
            if self.beam_size > 1:
                self._beam_frame(frame)
                continue
            for _ in range(self.max_symbols):
                logits = self.joiner_step(enc_proj=frame[None], pred_proj=self.pred)["logits"]
                k = int(np.argmax(logits[0]))
                if k == self.blank:
                    break
                emitted.append(k)
                self.pred = self._predict(k)
        self.tokens.extend(emitted)
        return emitted

    def recognize(self, audio):
        """audio float32 [N] mono -> (token ids, per-chunk latencies in s). The last chunk is zero-padded."""
        audio = np.asarray(audio, np.float32)
        self.start(audio[: self.prime])
        body = audio[self.prime:]
        n = max(1, -(-len(body) // self.chunk))
        body = np.concatenate([body, np.zeros(n * self.chunk - len(body), np.float32)])
        latencies = []
        for i in range(n):
            t0 = time.perf_counter()
            self.feed_chunk(body[i * self.chunk:(i + 1) * self.chunk])
            latencies.append(time.perf_counter() - t0)
        return self.best(), latencies

    def text(self, tokens):
        """Token ids -> text with the bundle's SentencePiece model (None without a tokenizer)."""
        return None if self.sp is None else self.sp.decode([int(t) for t in tokens])


def recognize(model_path, audio, max_symbols=5):
    """audio float32 [N] 16 kHz -> (token ids, text or None, per-chunk latencies s)."""
    asr = StreamingAsr(model_path, max_symbols=max_symbols)
    tokens, latencies = asr.recognize(audio)
    return tokens, asr.text(tokens), latencies


def main(argv=None):
    parser = argparse.ArgumentParser(description="Streaming ASR over a tf_todm .tflite bundle model.")
    parser.add_argument("--model", required=True, help="<name>.<mode>.tflite (sidecar .json beside it)")
    parser.add_argument("--wav", required=True, help="mono WAV at the model's sample rate (16 kHz)")
    parser.add_argument("--max_symbols", type=int, default=5, help="max tokens per encoder frame")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam", action="store_true", help="beam search with the bundle's LM (sidecar 'lm')")
    parser.add_argument("--beam_size", type=int, default=0, help="with --beam: width (0 = the sidecar's)")
    parser.add_argument("--json", action="store_true", help="print tokens, text, latency and RTF as JSON")
    args = parser.parse_args(argv)
    try:
        asr = StreamingAsr(args.model, num_threads=args.threads, max_symbols=args.max_symbols,
                           beam_size=args.beam_size if args.beam else 1)
        audio = read_wav(args.wav, asr.sample_rate_hz)
    except StreamAsrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    tokens, lat = asr.recognize(audio)
    text = asr.text(tokens)
    if args.json:
        print(json.dumps({"tokens": tokens, "text": text, "chunks": len(lat),
                          "latency_ms_median": 1000 * float(np.median(lat)),
                          "rtf": sum(lat) / (len(audio) / asr.sample_rate_hz)}))
    else:
        print(text if text is not None else " ".join(map(str, tokens)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
