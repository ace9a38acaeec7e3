"""The trainer: strategy, distributed input, custom loop, skipping of non-finite steps,
checkpoints, summaries, periodic dev WER, wall-clock limit.

The single-replica maths (model, losses, one sandwich step's gradients) lives in `task.py` /
`sandwich.py`; this file only distributes it:

    per replica: grads, scalars = task.replica_gradients(batch, subnets)   # global-batch normalised
    cross replica: grads = SUM over replicas; if all finite: ONE optimizer.apply(grads)

The optimizer is applied in cross-replica context to the already summed gradients, so
whole-model operations of the optimizer (ScaledAdam's clipping by the median gradient norm) see
exactly the gradient a single replica would see on the whole global batch.

Data position: epoch `e` reads `task.make_dataset(input_context, epoch=e)` (order a pure function
of `(seed, e)`) truncated to a fixed `steps_per_epoch`, so every replica runs the same number of
steps; a resumed run skips the `batch_in_epoch` batches already consumed.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tf_todm.atomic_files import remove_temp_files
from tf_todm.models.batch_norm_calibration import has_batch_norm
from tf_todm.training.checkpoints import Checkpointer, TrainState, write_json_atomic
from tf_todm.training.config import ConfigError, TrainConfig
from tf_todm.training.progress import ProgressLogger, tensorboard_dir


class NonFiniteLossError(RuntimeError):
    """Raised after `max_consecutive_nonfinite` steps in a row had a NaN/Inf loss or gradient."""


class StrategyError(ValueError):
    """The requested distribution strategy cannot be set up (one-line message)."""


# --- strategy ------------------------------------------------------------------------------
def configure_logical_cpus(num_devices: int) -> None:
    """Splits the host CPU into `num_devices` logical devices. Must run before TF initialises."""
    cpus = tf.config.list_physical_devices("CPU")
    existing = tf.config.get_logical_device_configuration(cpus[0])
    if existing is not None and len(existing) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError:
        raise StrategyError(
            f"strategy=mirrored: cannot split the CPU into {num_devices} logical devices because "
            "TensorFlow is already initialised; create the strategy before running any TF op") from None


def make_strategy(name: str, num_replicas: int = 2) -> tf.distribute.Strategy:
    """"default" (one device), "mirrored" (`num_replicas` logical CPUs) or "multi_worker"
    (`MultiWorkerMirroredStrategy` from the TF_CONFIG environment variable)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        configure_logical_cpus(num_replicas)
        devices = [f"/cpu:{i}" for i in range(num_replicas)]
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise StrategyError("strategy=multi_worker needs the TF_CONFIG environment variable "
                                '({"cluster": {"worker": [...]}, "task": {...}})')
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise StrategyError(f"TF_CONFIG is not valid JSON: {e}") from None
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise StrategyError(f"strategy={name!r}: expected default, mirrored or multi_worker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and logs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


# --- trainer -------------------------------------------------------------------------------
class Trainer:
    """Custom training loop around a task (see `task.TransducerTask`).

    The task must provide `model`, `optimizer` (both created under `strategy.scope()` by
    `task.build(strategy)`), `replica_gradients(batch, subnets) -> (grads, scalars)`,
    `subnets_for_step(step) -> nested tensors` (the same structure every step),
    `make_dataset(input_context, epoch) -> tf.data.Dataset`, `steps_per_epoch(num_replicas)`,
    `audio_seconds(batch)` and optionally `evaluate(max_utterances) -> dict` and `lr_schedule`
    (a `TimeBudgetDecay` there is fed the fraction of the time budget used before each step).

    Args:
      task: the single-replica task.
      config: `TrainConfig`.
      out_dir: run folder: `ckpt/`, `tb/`, `train_state.json` are written here.
      strategy: a `tf.distribute.Strategy` (default: the current one).
      extra_config: dict written into `config.json` beside the train config (model config, ...).
    """

    def __init__(self, task, config: TrainConfig, out_dir: str,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 extra_config: Optional[dict] = None):
        self.task = task
        self.config = config
        self.out_dir = out_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_chief = is_chief(self.strategy)
        self.trace_count = 0
        self.num_replicas = self.strategy.num_replicas_in_sync
        with self.strategy.scope():
            task.build(self.strategy)
            self.state = TrainState()
        self.model, self.optimizer = task.model, task.optimizer
        self.checkpointer = Checkpointer(os.path.join(out_dir, "ckpt"), self.model, self.optimizer,
                                         self.state, config.max_checkpoints_to_keep, self.is_chief)
        self.steps_per_epoch = int(task.steps_per_epoch(self.num_replicas))
        total = config.num_epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        if self.is_chief:
            os.makedirs(out_dir, exist_ok=True)
            stale = remove_temp_files(out_dir, ".json")  # a run killed mid-write of a side file
            if stale:
                logging.info("removed temp files of an interrupted write: %s", ", ".join(stale))
            full = {"train": config.to_dict(), **(extra_config or {}),
                    "num_replicas": self.num_replicas, "steps_per_epoch": self.steps_per_epoch}
            write_json_atomic(os.path.join(out_dir, "config.json"), full)
        self.progress = ProgressLogger(tensorboard_dir(out_dir) if self.is_chief else None,
                                       self.total_steps, config.log_every_steps, self.is_chief)
        self._train_steps: dict = {}  # traced step per number of subnets (sandwich / largest only)
        self._batch_spec = None
        self._consecutive_nonfinite = 0
        self.step_delay_seconds = 0.0  # testing aid: sleep after each step (kill/resume tests)

    # --- one step ----------------------------------------------------------------------------
    def _build_train_step(self, input_signature=None):
        strategy, task, model, optimizer = self.strategy, self.task, self.model, self.optimizer

        def step_fn(batch, subnets):
            self.trace_count += 1  # Python side effect: runs once per trace
            grads, scalars = strategy.run(task.replica_gradients, args=(batch, subnets))
            grads = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
            scalars = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                       for k, v in scalars.items()}
            finite = tf.reduce_all(tf.stack(
                [tf.math.is_finite(scalars["loss"])] +
                [tf.reduce_all(tf.math.is_finite(g)) for g in grads]))

            def apply():
                # Finite gradients can still overflow the weights (e.g. a huge learning rate): keep
                # the pre-step weights and roll back, so no NaN/Inf weight is ever checkpointed; the
                # step then counts as skipped like a non-finite loss.
                variables = model.trainable_variables
                backup = [tf.identity(v) for v in variables]
                optimizer.apply(grads, variables)
                weights_ok = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

                def roll_back():
                    for v, b in zip(variables, backup):
                        v.assign(b)
                    return tf.constant(False)

                return tf.cond(weights_ok, lambda: tf.constant(True), roll_back)

            applied = tf.cond(finite, apply, lambda: tf.constant(False))
            return scalars, applied

        return tf.function(step_fn, input_signature=input_signature, autograph=False)

    def set_batch_spec(self, element_spec) -> None:
        """Trace steps for batches of `element_spec` (a dataset's, sizes unknown), so one trace
        serves every batch shape. `train` calls it; callers of `train_step` should call it before
        their first step (a step already traced keeps its signature)."""
        self._batch_spec = element_spec

    def _step_function(self, subnets):
        """The traced step for this number of subnets: one trace for the sandwich (subnets enter
        as tensors) and one more if `largest_only_steps` trains the largest subnet alone first."""
        key = len(subnets)
        if key not in self._train_steps:
            signature = None
            if self._batch_spec is not None:
                signature = (self._batch_spec,
                             tf.nest.map_structure(tf.TensorSpec.from_tensor, subnets))
            self._train_steps[key] = self._build_train_step(signature)
        return self._train_steps[key]

    def train_step(self, batch, subnets) -> tuple[dict, bool]:
        """Runs one (distributed) step; returns (scalars as floats, applied?).

        A non-finite loss or gradient skips the update (weights and optimizer untouched) and is
        counted; `max_consecutive_nonfinite` skips in a row raise `NonFiniteLossError`.
        """
        scalars, applied = self._step_function(subnets)(batch, subnets)
        applied = bool(applied.numpy())
        scalars = {k: float(v.numpy()) for k, v in scalars.items()}
        if applied:
            self.state.step.assign_add(1)
            self._consecutive_nonfinite = 0
        else:
            self.state.num_skipped.assign_add(1)
            self._consecutive_nonfinite += 1
            logging.warning("non-finite loss/gradient at step %d: update skipped (%d in a row, %d total)",
                            int(self.state.step.numpy()), self._consecutive_nonfinite,
                            int(self.state.num_skipped.numpy()))
            if self._consecutive_nonfinite >= self.config.max_consecutive_nonfinite:
                raise NonFiniteLossError(
                    f"{self._consecutive_nonfinite} consecutive steps had a NaN/Inf loss or gradient "
                    f"(last at step {int(self.state.step.numpy())}); lower base_lr or check the data")
        return scalars, applied

    # --- the loop ----------------------------------------------------------------------------
    def _distributed_epoch(self, epoch: int, skip: int):
        take = self.steps_per_epoch

        def dataset_fn(input_context):
            # A pipeline feeds num_replicas / num_pipelines replicas: that many batches per step.
            per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
            ds = self.task.make_dataset(input_context, epoch=epoch)
            ds = ds.repeat().take(take * per_step)
            if skip:
                ds = ds.skip(skip * per_step)
            return ds

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    @property
    def _multi_worker(self) -> bool:
        return bool(getattr(self.strategy.extended, "_in_multi_worker_mode", lambda: False)())

    def _agree_max(self, local_value: float) -> float:
        """The largest of the workers' values (every worker must call it at the same step), so
        that all stop together: a lone stop would leave the others waiting in a collective."""
        if self._multi_worker:
            # ReduceOp has only SUM and MEAN: gather every replica's value, then take the max.
            value = tf.constant([local_value], tf.float32)
            gathered = self.strategy.gather(self.strategy.run(lambda: tf.identity(value)), axis=0)
            return float(tf.reduce_max(gathered).numpy())
        return local_value

    def _time_budget_schedule(self):
        """The task's `TimeBudgetDecay` schedule, which the loop feeds, or None."""
        from tf_todm.optim.time_budget import TimeBudgetDecay
        schedule = getattr(self.task, "lr_schedule", None)
        return schedule if isinstance(schedule, TimeBudgetDecay) else None

    def save(self) -> Optional[str]:
        path = self.checkpointer.save()
        if self.is_chief:
            write_json_atomic(os.path.join(self.out_dir, "train_state.json"),
                              {**self.state.as_dict(), "checkpoint": path})
            logging.info("checkpoint %s", path)
        return path

    def train(self, stop_after_steps: Optional[int] = None) -> dict:
        """Trains until `num_epochs`, `max_steps` or `max_train_minutes`; returns a summary.

        Resumes from the newest checkpoint in `out_dir/ckpt` if there is one.
        `stop_after_steps` (for tests) stops after that many optimizer steps in this call.
        """
        cfg = self.config
        if self.steps_per_epoch < 1:
            raise ConfigError("training set is smaller than one global batch (steps_per_epoch=0); "
                              "lower batch_size/max_batch_seconds or add data")
        restored = self.checkpointer.restore_latest()
        if restored:
            logging.info("resumed from %s at %s", restored, self.state.as_dict())
        t_start = time.perf_counter()
        seconds_before = float(self.state.train_seconds.numpy())
        budget = cfg.max_train_minutes * 60 if cfg.max_train_minutes else math.inf

        def trained_seconds() -> float:
            return seconds_before + time.perf_counter() - t_start

        deadline = t_start + budget - seconds_before  # the budget counts the run's earlier calls too
        self.progress.set_deadline(deadline)
        time_budget = self._time_budget_schedule()
        if time_budget is not None:
            time_budget.set_progress(seconds_before / budget)
        steps_this_call = 0
        stopped_by = "epochs"
        last_saved = int(self.state.step.numpy())
        last_scalars: dict = {}
        done = seconds_before >= budget
        if done:
            stopped_by = "max_train_minutes"
            logging.info("the time budget (%.1f min) was already used: %.1f s trained", cfg.max_train_minutes,
                         seconds_before)
        while int(self.state.epoch.numpy()) < cfg.num_epochs and not done:
            epoch = int(self.state.epoch.numpy())
            skip = int(self.state.batch_in_epoch.numpy())
            iterator = iter(self._distributed_epoch(epoch, skip))
            self.set_batch_spec(iterator.element_spec)
            for _ in range(skip, self.steps_per_epoch):
                step = int(self.state.step.numpy())
                if cfg.max_steps and step >= cfg.max_steps:
                    stopped_by, done = "max_steps", True
                    break
                batch = next(iterator)
                audio_seconds = self._audio_seconds(batch)
                if time_budget is not None and not self._multi_worker:
                    time_budget.set_progress(trained_seconds() / budget)
                scalars, applied = self.train_step(batch, self.task.subnets_for_step(step))
                self.state.batch_in_epoch.assign_add(1)
                self.state.train_seconds.assign(trained_seconds())
                step = int(self.state.step.numpy())
                if self.step_delay_seconds:
                    time.sleep(self.step_delay_seconds)
                if applied:
                    steps_this_call += 1
                    last_scalars = scalars
                    lr = self._current_lr()
                    self.progress.update(step, audio_seconds, {**scalars, "lr": lr})
                if cfg.checkpoint_every_steps and applied and step % cfg.checkpoint_every_steps == 0:
                    self.save()
                    last_saved = step
                if cfg.eval_every_steps and applied and step % cfg.eval_every_steps == 0:
                    self.evaluate(step)
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    stopped_by, done = "stop_after_steps", True
                    break
                if self._multi_worker:
                    # Workers decide together, at the same steps, or one would wait forever; the
                    # learning-rate decay follows the same agreed time (the largest worker clock).
                    if math.isfinite(budget) and applied and step % cfg.log_every_steps == 0:
                        agreed = self._agree_max(trained_seconds())
                        if time_budget is not None:
                            time_budget.set_progress(agreed / budget)
                        if agreed > budget:
                            stopped_by, done = "max_train_minutes", True
                            break
                elif time.perf_counter() > deadline:
                    stopped_by, done = "max_train_minutes", True
                    break
            else:
                self.state.epoch.assign_add(1)
                self.state.batch_in_epoch.assign(0)
            if cfg.max_steps and int(self.state.step.numpy()) >= cfg.max_steps:
                stopped_by, done = "max_steps", True
        step = int(self.state.step.numpy())
        if step != last_saved or not self.checkpointer.latest:
            self.save()
        self.progress.flush()
        elapsed = time.perf_counter() - t_start
        summary = {**self.state.as_dict(), "stopped_by": stopped_by, "elapsed_seconds": elapsed,
                   "steps_this_call": steps_this_call, "last_scalars": last_scalars,
                   **self.progress.last_rates}
        if self.is_chief:
            write_json_atomic(os.path.join(self.out_dir, "train_summary.json"), summary)
        logging.info("training stopped (%s) at step %d after %.1f s", stopped_by, step, elapsed)
        return summary

    def evaluate(self, step: Optional[int] = None) -> dict:
        """Dev WER (greedy decoding) of the task's evaluation subnets, logged by the chief.

        Other workers return {} without evaluating, except for a model with conv-module BatchNorm:
        its moving statistics are sync-on-read variables, and reading one outside a replica is a
        collective across workers, so every worker runs the same evaluation.
        """
        if not hasattr(self.task, "evaluate"):
            return {}
        collective_reads = self._multi_worker and has_batch_norm(self.task.model)
        if not self.is_chief and not collective_reads:
            return {}
        results = self.task.evaluate(self.config.eval_max_utterances)
        if not self.is_chief:
            return {}
        self.progress.scalars(int(self.state.step.numpy()) if step is None else step, results)
        return results

    # --- helpers -----------------------------------------------------------------------------
    def _audio_seconds(self, batch) -> float:
        lengths = batch["feature_lengths"]
        values = self.strategy.experimental_local_results(lengths)
        return float(sum(int(tf.reduce_sum(v).numpy()) for v in values)) * 0.01 * \
            (self.strategy.num_replicas_in_sync / max(1, len(values)))

    def _current_lr(self) -> float:
        lr = self.optimizer.learning_rate
        try:
            return float(np.asarray(lr))
        except (TypeError, ValueError):
            return float("nan")


def run_training(model_config, train_config: TrainConfig, out_dir: str, *, train_utterances,
                 dev_utterances, tokenizer, strategy: Optional[tf.distribute.Strategy] = None,
                 space=None, eval_subnets=None, final_eval: bool = True,
                 step_delay_seconds: float = 0.0) -> dict:
    """Builds the task and trainer, trains (resuming if `out_dir/ckpt` has a checkpoint),
    evaluates dev WER at the end, and returns the summary (also in `out_dir/train_summary.json`).
    """
    from tf_todm.training.task import TransducerTask
    if tokenizer is not None and tokenizer.vocab_size != model_config.vocab_size:
        raise ConfigError(f"TransducerConfig.vocab_size={model_config.vocab_size} but the tokenizer "
                          f"has {tokenizer.vocab_size} pieces")
    strategy = strategy or tf.distribute.get_strategy()
    task = TransducerTask(model_config, train_config, train_utterances, dev_utterances, tokenizer,
                          space=space, eval_subnets=eval_subnets)
    extra = {"model": model_config.to_dict()}
    if task.space is not None:
        extra["search_space"] = task.space.to_dict()
    trainer = Trainer(task, train_config, out_dir, strategy, extra_config=extra)
    trainer.step_delay_seconds = step_delay_seconds
    summary = trainer.train()
    if final_eval and dev_utterances:
        summary["dev"] = trainer.evaluate()
    summary["trace_count"] = trainer.trace_count
    if trainer.is_chief:
        write_json_atomic(os.path.join(out_dir, "train_summary.json"), summary)
    return summary
