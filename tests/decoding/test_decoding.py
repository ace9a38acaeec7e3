"""Greedy (batched graph) vs a naive per-utterance loop; beam=1 == greedy; CTC greedy by hand."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.decoding import ShallowFusion, TokenNgramLM, beam_search, ctc_greedy_decode, greedy_decode
from tf_todm.models import Transducer, encode_subnet
from tf_todm.models.testing import tiny_batch, tiny_config, tiny_space


@pytest.fixture(scope="module", params=["stateless", "lstm"])
def model_and_enc(request):
    keras.utils.set_random_seed(5)  # Keras 3 initialisers ignore tf.random.set_seed: weights must not depend on test order
    model = Transducer(tiny_config(predictor_type=request.param))
    features, lengths, labels = tiny_batch(0, t=37)
    enc, enc_lengths = model.encode(features, lengths)
    # Sharpen the joiner and shift blank's bias to its median margin: a mix of blanks and symbols.
    dense = model.joiner.output_dense
    dense.kernel.assign(dense.kernel.numpy() * 4.0)
    logits = model.joiner(enc, model.predict(labels)).numpy()
    margin = np.median(logits[..., 1:].max(-1) - logits[..., 0])
    dense.bias.assign(dense.bias.numpy() + np.eye(7, dtype=np.float32)[0] * margin)
    return model, enc, enc_lengths


def naive_greedy(model, enc, enc_lengths, max_symbols, subnet=None):
    """Independent reference: one utterance at a time, plain Python control flow, no batching."""
    results = []
    for b in range(enc.shape[0]):
        hyp = []
        out, state = model.predictor.step(tf.constant([BLANK_ID]), model.predictor.init_state(1), subnet)
        for t in range(int(enc_lengths[b])):
            e = model.joiner.project_encoder(enc[b:b + 1, t], subnet)
            for _ in range(max_symbols):
                logits = model.joiner.join(e, model.joiner.project_predictor(out, subnet)).numpy()[0]
                k = int(np.argmax(logits))
                if k == BLANK_ID:
                    break
                hyp.append(k)
                out, state = model.predictor.step(tf.constant([k]), state, subnet)
        results.append(hyp)
    return results


@pytest.mark.parametrize("max_symbols", [1, 3])
def test_greedy_matches_naive_loop(model_and_enc, max_symbols):
    model, enc, enc_lengths = model_and_enc
    got = greedy_decode(model, enc, enc_lengths, max_symbols_per_frame=max_symbols)
    want = naive_greedy(model, enc, enc_lengths, max_symbols)
    assert got == want
    assert any(len(h) > 0 for h in got)
    # Not trivially "one token per frame": some frames emitted blank.
    assert sum(len(h) for h in got) < int(np.sum(enc_lengths)) * max_symbols


def test_greedy_with_subnet_matches_naive_loop(model_and_enc):
    model, enc, enc_lengths = model_and_enc
    sub = encode_subnet(model.config, tiny_space(model.config).smallest())
    assert greedy_decode(model, enc, enc_lengths, subnet=sub) == naive_greedy(model, enc, enc_lengths, 3, sub)


def test_beam_one_equals_greedy_one_symbol(model_and_enc):
    model, enc, enc_lengths = model_and_enc
    assert beam_search(model, enc, enc_lengths, beam=1) == greedy_decode(model, enc, enc_lengths,
                                                                         max_symbols_per_frame=1)


def brute_force_totals(model, enc, frames):
    """log of the total probability of every token sequence over one-symbol-per-frame alignments
    of the first `frames` frames of utterance 0 (brute force over V^frames alignments)."""
    vocab = model.config.vocab_size
    enc = enc[:1, :frames]
    totals, lattices = {}, {}
    for alignment in itertools.product(range(vocab), repeat=frames):
        tokens = tuple(k for k in alignment if k != BLANK_ID)
        if tokens not in lattices:
            pred = model.predict(np.array([tokens], np.int32).reshape(1, len(tokens)))
            lattice = model.joiner(enc, pred).numpy()[0].astype(np.float64)  # (T', U+1, V)
            lattices[tokens] = lattice - np.log(np.exp(lattice).sum(-1, keepdims=True))
        logp, u = 0.0, 0
        for t, k in enumerate(alignment):
            logp += lattices[tokens][t, u, k]
            u += k != BLANK_ID
        totals[tokens] = np.logaddexp(totals.get(tokens, -np.inf), logp)
    return totals


def test_unpruned_beam_equals_brute_force(model_and_enc):
    """With a beam wide enough to never prune, modified beam search returns the token sequence with
    the largest total probability over one-symbol-per-frame alignments (brute force over V^2)."""
    model, enc, _ = model_and_enc
    frames, vocab = 2, model.config.vocab_size
    totals = brute_force_totals(model, enc, frames)
    best = max(totals, key=totals.get)
    assert beam_search(model, enc[:1, :frames], [frames], beam=vocab ** frames) == [list(best)]


def test_unpruned_beam_with_lm_fusion_equals_brute_force(model_and_enc):
    """Shallow fusion: the unpruned beam's pick maximises log P_transducer(y) + w log P_LM(y, end)
    + bonus |y| over every sequence y (brute force), and the LM changes the pick here."""
    model, enc, _ = model_and_enc
    frames, vocab = 3, model.config.vocab_size
    totals = brute_force_totals(model, enc, frames)
    lm_corpus = [[k] for k in range(1, vocab) if (k,) != max(totals, key=totals.get)[:1]] * 3 + [[1, 2, 3]]
    lm = TokenNgramLM.fit(lm_corpus, vocab_size=vocab, order=2)
    weight, bonus = 2.0, 0.3
    fused = {y: p + weight * lm.sequence_log_prob(list(y)) + bonus * len(y) for y, p in totals.items()}
    best = max(fused, key=fused.get)
    assert best != max(totals, key=totals.get)
    fusion = ShallowFusion(lm, weight, bonus)
    assert beam_search(model, enc[:1, :frames], [frames], beam=vocab ** frames, fusion=fusion) == [list(best)]


def test_ctc_greedy_decode():
    logits = np.full((2, 6, 4), -5.0, np.float32)
    paths = [[1, 1, 0, 1, 2, 2], [0, 3, 3, 0, 0, 3]]
    for b, path in enumerate(paths):
        logits[b, np.arange(6), path] = 5.0
    assert ctc_greedy_decode(logits, [6, 4]) == [[1, 1, 2], [3]]
