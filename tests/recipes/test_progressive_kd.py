"""Progressive KD: stage specs, slice initialisation, the KD loss vs NumPy KL, and a 2-stage run."""
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.recipes import progressive_kd as pk
from tf_todm.recipes.common import RecipeError


def test_stage_specs_validate():
    stages = pk.stages_from_lists([2, 1], [16, 8], [2, 1], [12, 6], [12, 8], [16, 8])
    assert [s.num_blocks for s in stages] == [2, 1] and stages[1].subnet_config().ff_dims == (8,)
    with pytest.raises(RecipeError, match="stage_ff_dims"):
        pk.stages_from_lists([2, 1], [16], [2, 1], [12, 6], [12, 8], [16, 8])
    with pytest.raises(RecipeError, match="num_heads"):
        pk.StageSpec(2, 16, 0, 12, 12, 16)


def test_student_from_teacher_slices_when_shapes_allow(tiny_config):
    from tf_todm.models.transducer import Transducer
    tf.keras.utils.set_random_seed(2)
    teacher = Transducer(tiny_config(7))
    full = pk.StageSpec(3, 18, 2, 10, 14, 16)
    student, init = pk.student_from_teacher(teacher, full)
    assert init == "slice"
    feats = tf.random.normal([3, 41, 80], seed=1)
    lengths = tf.constant([41, 30, 19])
    np.testing.assert_allclose(student.encode(feats, lengths)[0].numpy(),
                               teacher.encode(feats, lengths)[0].numpy(), atol=1e-5)
    small, init = pk.student_from_teacher(teacher, pk.StageSpec(2, 12, 1, 6, 8, 10))
    assert init == "slice" and small.count_params() < teacher.count_params()
    # A sliced weight is the teacher's prefix.
    np.testing.assert_array_equal(small.encoder.blocks[1].ff1.inner.kernel.numpy(),
                                  teacher.encoder.blocks[1].ff1.inner.kernel.numpy()[:, :12])
    wide, init = pk.student_from_teacher(teacher, pk.StageSpec(2, 24, 2, 10, 14, 16))
    assert init == "random" and wide.config.ff_dim == 24
    narrow, init = pk.student_from_teacher(teacher, pk.StageSpec(2, 12, 2, 10, 14, 16, model_dim=8))
    assert init == "random" and narrow.config.model_dim == 8


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_kd_loss_is_kl_teacher_student_over_the_lattice(tiny_config, tiny_train_config):
    from tf_todm.models.transducer import Transducer
    tf.keras.utils.set_random_seed(3)
    teacher = Transducer(tiny_config(7))
    student_model, _ = pk.student_from_teacher(teacher, pk.StageSpec(2, 12, 1, 6, 8, 10))
    task = pk.DistillationTask(student_model.config, teacher, tiny_train_config(kd_weight=0.3,
                               label_loss_weight=0.6), init_model=student_model)
    task.build()
    rng = np.random.default_rng(0)
    batch = {"features": tf.constant(rng.standard_normal((3, 41, 80)), tf.float32),
             "feature_lengths": tf.constant([41, 33, 21], tf.int32),
             "labels": tf.constant([[1, 4, 2, 6], [3, 5, 0, 0], [2, 0, 0, 0]], tf.int32),
             "label_lengths": tf.constant([4, 2, 1], tf.int32)}
    targets = task.teacher_targets(batch, 3)
    out = task.compute_losses(batch, None, targets, 3, training=False)

    def lattice(model):
        enc, lens = model.encode(batch["features"], batch["feature_lengths"])
        pred = model.predict(batch["labels"])
        j = model.joiner
        logits = j.join(j.project_encoder(enc)[:, :, None], j.project_predictor(pred)[:, None])
        return logits.numpy().astype(np.float64), lens.numpy()

    lt, lens = lattice(teacher)
    ls, _ = lattice(task.model)
    lp, lq = _np_log_softmax(lt), _np_log_softmax(ls)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)  # (B, T', U+1)
    expected = []
    for b in range(3):
        u = int(batch["label_lengths"][b])
        expected.append(kl[b, :lens[b], :u + 1].mean() * lens[b])
    np.testing.assert_allclose(out["kd"].numpy(), np.sum(expected) / 3, rtol=1e-4)
    np.testing.assert_allclose(out["loss"].numpy(),
                               (0.3 * np.sum(expected) + 0.6 * 3 * out["rnnt"].numpy()) / 3, rtol=1e-4)
    # A student identical to its teacher has zero KD.
    same = pk.DistillationTask(teacher.config, teacher, tiny_train_config(), init_model=teacher)
    same.build()
    zero = same.compute_losses(batch, None, same.teacher_targets(batch, 3), 3, training=False)
    assert abs(float(zero["kd"])) < 1e-5


def test_distillation_requires_alpha_one(tiny_config, tiny_train_config):
    from tf_todm.models.transducer import Transducer
    with pytest.raises(RecipeError, match="alpha_min"):
        pk.DistillationTask(tiny_config(7), Transducer(tiny_config(7)),
                            tiny_train_config(alpha_min=-1.0))


@pytest.mark.slow
def test_two_stages_shrink_and_chain_teachers(recipe_corpus, tiny_config, tiny_train_config, tmp_path):
    import json

    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.models.transducer import Transducer
    tok = Tokenizer(recipe_corpus["tokenizer_path"])
    tf.keras.utils.set_random_seed(4)
    teacher = Transducer(tiny_config(tok.vocab_size))
    stages = pk.stages_from_lists([2, 1], [12, 8], [2, 1], [8, 6], [10, 8], [12, 8])
    records = pk.run_progressive(teacher, stages, tiny_train_config(max_steps=1),
                                 recipe_corpus["train"], recipe_corpus["dev"][:2], tok, str(tmp_path))
    params = [teacher.count_params()] + [r["params"] for r in records]
    assert params == sorted(params, reverse=True) and len(set(params)) == 3
    assert records[0]["teacher"] is teacher and records[1]["teacher"] is records[0]["model"]
    assert [r["init"] for r in records] == ["slice", "slice"]
    saved = json.load(open(tmp_path / "stage2" / "config.json"))
    assert saved["teacher_model"] == records[0]["model"].config.to_dict()
    assert all(r["summary"]["step"] == 1 and r["summary"]["history"] for r in records)
