"""Per-utterance augmentation draws: reproducible, per index, per seed and per stream."""
import numpy as np
import tensorflow as tf

from tf_todm.data.seeded_draws import SPEED_STREAM, VTLP_STREAM, utterance_uniform


def test_draws_are_pure_functions_of_seed_index_and_stream():
    def draws(seed, stream):
        return np.array([utterance_uniform(seed, i, [3], -1.0, 1.0, stream).numpy() for i in range(64)])
    a = draws(5, VTLP_STREAM)
    np.testing.assert_array_equal(a, draws(5, VTLP_STREAM))
    assert np.all((a >= -1) & (a < 1)) and len(np.unique(a)) == a.size
    for other in (draws(6, VTLP_STREAM), draws(5, SPEED_STREAM)):
        assert abs(np.corrcoef(a.ravel(), other.ravel())[0, 1]) < 0.3  # different, unrelated streams


def test_draws_work_inside_a_dataset_map():
    ds = tf.data.Dataset.range(4).map(lambda i: utterance_uniform(1, i, [], 0.0, 1.0, VTLP_STREAM))
    eager = [float(utterance_uniform(1, i, [], 0.0, 1.0, VTLP_STREAM)) for i in range(4)]
    np.testing.assert_allclose([float(x) for x in ds], eager)
