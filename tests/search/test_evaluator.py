"""SupernetWerEvaluator against an independent path: the extracted (sliced) subnet, decoded on its own."""

import numpy as np
import pytest

pytest.importorskip("tf_todm.models.transducer")
pytest.importorskip("tf_todm.decoding")
pytest.importorskip("tf_todm.metrics")
pytest.importorskip("tf_todm.export.extract")

import jiwer  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_todm.data.tokenizer import Tokenizer, train_tokenizer  # noqa: E402
from tf_todm.decoding import greedy_decode  # noqa: E402
from tf_todm.export.extract import extract_subnet  # noqa: E402
from tf_todm.models.config import TransducerConfig  # noqa: E402
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig  # noqa: E402
from tf_todm.models.transducer import Transducer  # noqa: E402
from tf_todm.search.evaluator import SupernetWerEvaluator  # noqa: E402

TEXTS = ["turn on the kitchen lights", "set a timer for seven minutes", "what is the weather today",
         "play some music in the living room", "call my sister at nine", "the quick brown fox jumps",
         "remind me to buy milk", "open the garage door please", "how far is the moon"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tokenizer = Tokenizer(train_tokenizer(TEXTS * 3, str(tmp_path_factory.mktemp("spm") / "tok"), 29))
    config = TransducerConfig(input_dim=13, model_dim=12, num_blocks=2, ff_dim=17, num_heads=3,
                              conv_dim=7, conv_kernel_size=5, subsampling_channels=5,
                              predictor_type="stateless", predictor_dim=10, joiner_dim=9,
                              vocab_size=tokenizer.vocab_size, dropout=0.0)
    keras_seed = 3
    tf.keras.utils.set_random_seed(keras_seed)
    model = Transducer(config)
    rng = np.random.default_rng(0)
    batches = []
    for b in range(3):
        lengths = np.array([23, 19, 15], np.int32)
        features = rng.standard_normal((3, 23, 13)).astype(np.float32)
        texts = TEXTS[3 * b:3 * b + 3]
        batches.append({"features": tf.constant(features), "feature_lengths": tf.constant(lengths),
                        "text": tf.constant(texts)})
    return tokenizer, config, model, batches


def _independent_wer(model, subnet, batches, tokenizer):
    sliced = extract_subnet(model, subnet)
    refs, hyps = [], []
    for batch in batches:
        enc, enc_lengths = sliced.encode(batch["features"], batch["feature_lengths"])
        hyps += [tokenizer.decode(ids) for ids in greedy_decode(sliced, enc, enc_lengths)]
        refs += [t.decode() for t in batch["text"].numpy()]
    return refs, hyps


def test_wer_equals_the_extracted_subnets_wer(setup):
    tokenizer, config, model, batches = setup
    evaluator = SupernetWerEvaluator(model, batches, tokenizer, max_batches=2)
    subnet = SubnetConfig(1, (6,), (1,), (4,), 5, 4)
    SearchSpace((1, 2), (6, 17), (1, 3), (4, 7), (5, 10), (4, 9)).validate(subnet)
    refs, hyps = _independent_wer(model, subnet, batches[:2], tokenizer)
    got_refs, got_hyps = evaluator.transcribe(subnet)
    assert got_refs == refs == TEXTS[:6]
    assert got_hyps == hyps
    assert evaluator.evaluate(subnet) == pytest.approx(jiwer.wer(refs, hyps))
    assert evaluator.num_calls == 1


def test_max_batches_and_full_model(setup):
    tokenizer, config, model, batches = setup
    evaluator = SupernetWerEvaluator(model, batches, tokenizer)
    refs, _ = evaluator.transcribe(None)
    assert refs == TEXTS
    largest = SubnetConfig(2, (17, 17), (3, 3), (7, 7), 10, 9)
    assert evaluator.transcribe(largest)[1] == evaluator.transcribe(None)[1]
    with pytest.raises(ValueError, match="yielded no batches"):
        SupernetWerEvaluator(model, [], tokenizer).evaluate(largest)


def test_batch_norm_supernet_is_recalibrated_per_subnet(setup):
    """A conv_norm="batch" supernet: the evaluator re-estimates the subnet's statistics, so its WER
    equals the subnet extracted with the same calibration batches (which leaves the supernet's own
    statistics as they were); without calibration data it refuses."""
    tokenizer, config, _, batches = setup
    tf.keras.utils.set_random_seed(4)
    model = Transducer(config.replace(conv_norm="batch"))
    calibration = [{"features": b["features"] * 2.0 + 1.0, "feature_lengths": b["feature_lengths"]}
                   for b in batches]
    with pytest.raises(ValueError, match="calibration_dataset"):
        SupernetWerEvaluator(model, batches, tokenizer)
    subnet = SubnetConfig(2, (6, 17), (1, 3), (4, 7), 5, 4)
    before = [b.conv.conv_norm_moving_variance.numpy() for b in model.encoder.blocks]
    sliced = extract_subnet(model, subnet, calibration_batches=calibration)
    for block, variance in zip(model.encoder.blocks, before):
        np.testing.assert_array_equal(block.conv.conv_norm_moving_variance.numpy(), variance)
    assert not np.allclose(sliced.encoder.blocks[0].conv.conv_norm_moving_variance.numpy(), 1.0)
    refs, hyps = [], []
    for batch in batches:
        enc, enc_lengths = sliced.encode(batch["features"], batch["feature_lengths"])
        hyps += [tokenizer.decode(ids) for ids in greedy_decode(sliced, enc, enc_lengths)]
        refs += [t.decode() for t in batch["text"].numpy()]
    evaluator = SupernetWerEvaluator(model, batches, tokenizer, calibration_dataset=calibration)
    assert evaluator.transcribe(subnet) == (refs, hyps)


def test_subset_scores_the_first_batches_and_shares_the_traced_encoder(setup):
    tokenizer, config, model, batches = setup
    full = SupernetWerEvaluator(model, batches, tokenizer)
    screen = full.subset(1)
    subnet = SubnetConfig(1, (6,), (1,), (4,), 5, 4)
    refs, hyps = _independent_wer(model, subnet, batches[:1], tokenizer)
    assert screen.transcribe(subnet) == (refs, hyps) and refs == TEXTS[:3]
    assert screen.evaluate(subnet) == pytest.approx(jiwer.wer(refs, hyps))
    assert screen.num_calls == 1 and full.num_calls == 0
    assert screen._encode is full._encode  # no second trace
    assert full.transcribe(subnet)[0] == TEXTS  # the full evaluator still sees every batch
    with pytest.raises(ValueError, match="dev_batches must be >= 1, got 0"):
        full.subset(0)


def test_on_dataset_scores_another_dev_set_with_the_same_traced_encoder(setup):
    tokenizer, config, model, batches = setup
    first = SupernetWerEvaluator(model, batches[:1], tokenizer)
    other = first.on_dataset(batches[1:])
    subnet = SubnetConfig(1, (6,), (1,), (4,), 5, 4)
    refs, hyps = _independent_wer(model, subnet, batches[1:], tokenizer)
    assert other.transcribe(subnet) == (refs, hyps) and refs == TEXTS[3:]
    assert other.evaluate(subnet) == pytest.approx(jiwer.wer(refs, hyps))
    assert other.num_calls == 1 and first.num_calls == 0
    assert other._encode is first._encode  # no second trace
    assert first.transcribe(subnet)[0] == TEXTS[:3]  # the first evaluator keeps its own dev set
