"""The time budget across a resume, and the learning-rate decay over its end, in a real training
loop on the tiny TTS corpus (in-process Trainer, a 1-block model)."""
import numpy as np
import pytest

from tf_todm.data.tokenizer import Tokenizer
from tf_todm.models.config import TransducerConfig
from tf_todm.optim import Eden
from tf_todm.training.config import TrainConfig
from tf_todm.training.task import TransducerTask
from tf_todm.training.trainer import Trainer

MODEL = dict(model_dim=16, num_blocks=1, ff_dim=24, num_heads=2, conv_dim=12, conv_kernel_size=3,
             subsampling_channels=4, predictor_dim=12, joiner_dim=16, dropout=0.0)


def make_trainer(corpus, out_dir, step_delay_seconds=0.0, **train):
    tokenizer = Tokenizer(corpus["tokenizer_path"])
    config = TrainConfig(batch_size=2, supernet=False, loss="exact", optimizer="adam", base_lr=0.003,
                         warmup_batches=0, specaugment=False, num_epochs=50, checkpoint_every_steps=0,
                         log_every_steps=1, **train)
    task = TransducerTask(TransducerConfig(vocab_size=tokenizer.vocab_size, **MODEL), config,
                          corpus["train"], (), tokenizer)
    trainer = Trainer(task, config, str(out_dir))
    trainer.step_delay_seconds = step_delay_seconds
    return trainer


def test_time_budget_counts_earlier_calls_and_the_rate_decays_over_its_end(tiny_corpus, tmp_path):
    first = make_trainer(tiny_corpus, tmp_path, step_delay_seconds=3.0, max_train_minutes=10)
    first.train(stop_after_steps=2)
    seconds_first = float(first.state.train_seconds.numpy())
    assert seconds_first >= 6.0  # two steps of 3 s each, plus tracing

    # Resume with a budget 1 s longer than what is already trained: the run stops about 1 s
    # later (one step, plus its retrace), not after a fresh budget of seconds_first + 1 s.
    budget = seconds_first + 1.0
    second = make_trainer(tiny_corpus, tmp_path, step_delay_seconds=0.3, max_train_minutes=budget / 60,
                          lr_time_decay=1.0)
    summary = second.train()
    assert summary["stopped_by"] == "max_train_minutes" and summary["step"] > 2, summary
    assert summary["elapsed_seconds"] < seconds_first, summary
    total = float(second.state.train_seconds.numpy())
    assert budget <= total <= seconds_first + summary["elapsed_seconds"] + 1e-6
    assert summary["train_seconds"] == pytest.approx(total, abs=1e-3)

    # The optimizer's rate is Eden's at this step times the factor of the progress last set,
    # which was at least seconds_first / budget (> 6/7) into a decay over the whole budget.
    progress = float(second.task.lr_schedule.progress.numpy())
    assert progress >= seconds_first / budget
    eden = Eden(0.003, warmup_batches=0, steps_per_epoch=second.steps_per_epoch)(summary["step"])
    np.testing.assert_allclose(float(second.optimizer.learning_rate),
                               float(eden) * max(0.0, 1.0 - progress), rtol=1e-5, atol=1e-12)
    assert float(second.optimizer.learning_rate) < float(eden) / 7

    # A run whose budget is already used takes no step and keeps its checkpoint.
    third = make_trainer(tiny_corpus, tmp_path, max_train_minutes=(total - 0.5) / 60)
    summary3 = third.train()
    assert summary3["stopped_by"] == "max_train_minutes" and summary3["steps_this_call"] == 0
    assert summary3["step"] == summary["step"]
