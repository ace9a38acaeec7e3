"""Representation transfer: loss maths vs NumPy, stage 1 freezes the reference, stage 2 trains CTC."""
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.recipes import repr_transfer as rt
from tf_todm.recipes.common import RecipeError


def test_shallow_num_blocks_paper_reductions():
    assert [rt.shallow_num_blocks(12, r) for r in (0.5, 0.667, 0.8333)] == [6, 4, 2]
    assert rt.shallow_num_blocks(3, 0.9) == 1
    with pytest.raises(RecipeError, match="reduction"):
        rt.shallow_num_blocks(6, 1.0)


def test_shallow_config_keeps_widths_of_extracted_reference(tiny_config):
    ref = tiny_config(7, num_blocks=6, block_ff_dims=(18,) * 6, block_num_heads=(2,) * 6,
                      block_conv_dims=(10,) * 6)
    student = rt.shallow_config(ref, 0.5)
    assert (student.num_blocks, student.ff_dim, student.num_heads, student.conv_dim) == (3, 18, 2, 10)
    assert student.block_ff_dims is None and student.model_dim == 12


def _np_infonce(s, t, temperature):
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    sim = s @ t.T / temperature

    def xent(m):
        m = m - m.max(axis=1, keepdims=True)
        logp = m - np.log(np.exp(m).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(logp))

    return 0.5 * (xent(sim) + xent(sim.T))


def test_representation_losses_match_numpy():
    rng = np.random.default_rng(0)
    b, t, d = 3, 23, 12
    student = rng.standard_normal((b, t, d)).astype(np.float32)
    teacher = rng.standard_normal((b, t, d)).astype(np.float32)
    lengths = np.array([23, 17, 9], np.int32)
    cfg = rt.ReprLossConfig(mse_weight=0.7, infonce_weight=0.3, temperature=0.2, max_frames=1000)
    out = rt.representation_losses(tf.constant(student), tf.constant(teacher), tf.constant(lengths),
                                   cfg, global_batch_size=5, num_replicas=2)
    s64, t64 = student.astype(np.float64), teacher.astype(np.float64)
    mse = sum(np.mean((s64[i, :n] - t64[i, :n]) ** 2) for i, n in enumerate(lengths)) / 5
    valid = np.concatenate([np.arange(n) + i * t for i, n in enumerate(lengths)])
    nce = _np_infonce(s64.reshape(-1, d)[valid], t64.reshape(-1, d)[valid], 0.2) / 2
    np.testing.assert_allclose(out["mse"].numpy(), mse, rtol=1e-5)
    np.testing.assert_allclose(out["infonce"].numpy(), nce, rtol=1e-4)
    np.testing.assert_allclose(out["loss"].numpy(), 0.7 * mse + 0.3 * nce, rtol=1e-4)


def test_ctc_model_round_trip_and_deploy_params(tiny_config):
    cfg = tiny_config(7, num_blocks=2)
    model = rt.CtcModel(cfg, projection_dim=9)
    clone = rt.CtcModel.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    d, v, c, ff, h, conv, k = 12, 7, 4, 18, 2, 10, 3
    freq = ((80 - 3) // 2 + 1 - 3) // 2 + 1
    subsampling = 2 * 80 + (9 * c + c) + (9 * c * c + c) + freq * c * d + d  # + feature mean/std
    inner = h * (d // h)
    block = (2 * (2 * d + d * ff + ff + ff * d + d) + 2 * d + 3 * (d * inner + inner) + inner * d + d
             + 2 * d + d * 2 * conv + 2 * conv + k * conv + conv + 2 * conv + conv * d + d + 2 * d)
    assert rt.deploy_params(model) == subsampling + 2 * block + d * v + v
    assert model.count_params() == rt.deploy_params(model) + d * 9 + 9


def _batch(task):
    return next(iter(task.make_dataset()))


def _train(task, batch, steps):
    losses = []
    for _ in range(steps):
        grads, scalars = task.replica_gradients(batch, [])
        task.optimizer.apply(grads, task.model.trainable_variables)
        losses.append(float(scalars["loss"]))
    return losses


def test_stage1_learns_reference_and_keeps_it_frozen_then_stage2_trains_ctc(recipe_corpus, tiny_config,
                                                                            tiny_train_config):
    from tf_todm.data.tokenizer import Tokenizer
    from tf_todm.models.transducer import Transducer
    tok = Tokenizer(recipe_corpus["tokenizer_path"])
    ref_config = tiny_config(tok.vocab_size)
    tf.keras.utils.set_random_seed(1)
    reference = Transducer(ref_config)
    ref_before = [w.numpy().copy() for w in reference.weights]
    student = rt.shallow_config(ref_config, 0.667)
    assert student.num_blocks == 1
    train = recipe_corpus["train"]
    s1 = rt.ReprTransferTask(student, reference, tiny_train_config(), rt.ReprLossConfig(),
                             train, [], tok)
    s1.build()
    assert s1.model.projection.units == ref_config.model_dim
    head_before = [w.numpy().copy() for w in s1.model.ctc_head.weights]
    enc_before = [w.numpy().copy() for w in s1.model.encoder.weights]
    batch = _batch(s1)
    losses = _train(s1, batch, 12)
    assert losses[-1] < 0.8 * losses[0], losses
    for before, w in zip(ref_before, reference.weights):
        np.testing.assert_array_equal(before, w.numpy())
    for before, w in zip(head_before, s1.model.ctc_head.weights):
        np.testing.assert_array_equal(before, w.numpy())
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(enc_before, s1.model.encoder.weights))

    s2 = rt.CtcTask(student, tiny_train_config(), train, [], tok, init_model=s1.model)
    s2.build()
    for a, b in zip(s2.model.weights, s1.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    proj_before = [w.numpy().copy() for w in s2.model.projection.weights]
    head_before = [w.numpy().copy() for w in s2.model.ctc_head.weights]
    ctc = _train(s2, batch, 12)
    assert ctc[-1] < 0.8 * ctc[0], ctc
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(head_before, s2.model.ctc_head.weights))
    for before, w in zip(proj_before, s2.model.projection.weights):
        np.testing.assert_array_equal(before, w.numpy())


@pytest.mark.parametrize("module,flag", [("train_repr_transfer", "reference_run"),
                                         ("train_progressive_kd", "teacher_run")])
def test_cli_missing_run_folder_exits_1_with_one_line(tmp_path, module, flag):
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", f"--out_dir={tmp_path}/out",
         f"--{flag}={tmp_path}/missing", f"--train_manifest={tmp_path}/t.jsonl",
         f"--dev_manifest={tmp_path}/d.jsonl"],
        cwd=repo, env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --{flag}=") and "config.json" in last
    assert "Traceback" not in proc.stderr
