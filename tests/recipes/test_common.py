"""tf_todm.recipes.common.evaluate_model: per-domain and pooled WER against jiwer on one-by-one
greedy decodes of real (generated) speech."""
import jiwer
import numpy as np
import tensorflow as tf

from tf_todm.data.pipeline import make_dataset
from tf_todm.data.tokenizer import Tokenizer
from tf_todm.decoding import greedy_decode
from tf_todm.models.transducer import Transducer
from tf_todm.recipes.common import evaluate_model


def test_evaluate_model_scores_each_domain_and_all_utterances_like_jiwer(recipe_corpus, tiny_config):
    tok = Tokenizer(recipe_corpus["tokenizer_path"])
    tf.keras.utils.set_random_seed(3)
    model = Transducer(tiny_config(tok.vocab_size))
    utts = recipe_corpus["test"] + recipe_corpus["dev"]
    assert {u.domain for u in utts} == {"command", "open"}
    result = evaluate_model("transducer", model, utts, tok, batch_size=3)
    refs, hyps = {}, {}
    for u in utts:  # the reference: every utterance decoded alone
        batch = next(iter(make_dataset([u], tok, batch_size=1, training=False, specaugment=False)))
        enc, lengths = model.encode(batch["features"], batch["feature_lengths"], training=False)
        ids = greedy_decode(model, enc, lengths)[0]
        refs.setdefault(u.domain, []).append(u.text)
        hyps.setdefault(u.domain, []).append(" ".join(tok.decode(ids).split()))
    for domain in ("command", "open"):
        assert np.isclose(result["wer_by_domain"][domain], jiwer.wer(refs[domain], hyps[domain]))
    everything = lambda d: d["command"] + d["open"]  # noqa: E731
    assert np.isclose(result["wer"], jiwer.wer(everything(refs), everything(hyps)))
    assert result["rtf"] > 0 and result["audio_seconds"] > 0
