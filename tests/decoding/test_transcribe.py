"""tf_todm.decoding.transcribe: batch order, one hypothesis per reference, ids → text via the tokenizer."""

import tensorflow as tf

from tf_todm.data.tokenizer import Tokenizer, train_tokenizer
from tf_todm.decoding import transcribe

TEXTS = ["set a timer for ten minutes", "turn off the lights", "what time is it", "play some music please",
         "call mom", "open the door"]


def test_transcribe_keeps_order_and_decodes_ids(tmp_path):
    tokenizer = Tokenizer(train_tokenizer(TEXTS * 4, str(tmp_path / "tok"), vocab_size=30, model_type="unigram"))
    batches = [{"text": tf.constant([t.encode() for t in TEXTS[i:i + 4]])} for i in (0, 4)]
    seen = []

    def decode_ids(batch):  # echo each reference, the second utterance of a batch emptied
        texts = [t.decode() for t in batch["text"].numpy()]
        seen.append(len(texts))
        ids = tokenizer.encode(texts)
        ids[1] = [0, 0]  # blanks only: decodes to ""
        return ids

    refs, hyps = transcribe(batches, tokenizer, decode_ids)
    assert seen == [4, 2]
    assert refs == TEXTS
    assert hyps == [TEXTS[0], "", TEXTS[2], TEXTS[3], TEXTS[4], ""]


def test_hypotheses_have_whitespace_runs_collapsed():
    """A barely trained model's consecutive word-boundary pieces decode to extra spaces; hypotheses
    follow the metrics' whitespace convention, so the written text is what is scored."""
    class SpacedTokenizer:  # decode as SentencePiece does for ["▁", "▁turn", "▁", "▁on", "▁"]
        def decode(self, ids):
            return "  turn  on "

    refs, hyps = transcribe([{"text": tf.constant([b"turn on"])}], SpacedTokenizer(), lambda batch: [[5, 6]])
    assert refs == ["turn on"] and hyps == ["turn on"]
