"""Multi-stage progressive distillation of a (streaming) Conformer-Transducer (after Rathod et
al. 2022, A3).

A teacher transducer is compressed in stages; the distilled student of stage k becomes the
teacher of stage k+1. Per stage the student's loss is

    label_loss_weight * RNN-T(labels) + kd_weight * KD,

KD = KL(p_teacher || q_student) over the transducer output distributions
(`tf_todm.losses.adaptive_alpha_divergence` with alpha_min = alpha_max = 1, i.e. exactly
`alpha_divergence(alpha=1)`), averaged over the valid lattice nodes (`loss="exact"`) or over the
teacher's pruned band (`loss="pruned"`: the student's band logits are computed at the teacher's
ranges), times the number of encoder frames. This is `TransducerTask.compute_losses` with a
teacher from another model instead of the largest subnet.

Initialisation: when the student's `model_dim` equals the teacher's, the student is the
teacher's SLICE (`tf_todm.export.extract.extract_subnet`: the first `num_blocks` blocks, the first
ff/head/conv/predictor/joiner units), which needs every student width <= the teacher's (and an
equal width for an LSTM predictor). When `model_dim` changes (the residual stream cannot be
sliced without retraining every layer's input), the student starts from random weights; the
stage record says which (`init`: "slice" or "random").

Baselines (same data, same steps): one-shot distillation from the first teacher straight to the
final size (one `run_stage`), and the final size trained from scratch with labels only.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import keras
import tensorflow as tf

from tf_todm.models.config import TransducerConfig
from tf_todm.models.elastic_space import SubnetConfig
from tf_todm.models.transducer import Transducer
from tf_todm.recipes.common import CachedDataTask, RecipeError, copy_weights, run_training


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """Size of one stage's student (uniform over blocks).

    `model_dim` None keeps the teacher's width (slice initialisation possible).
    """

    num_blocks: int
    ff_dim: int
    num_heads: int
    conv_dim: int
    predictor_dim: int
    joiner_dim: int
    model_dim: Optional[int] = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "model_dim":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RecipeError(f"StageSpec.{f.name}={value!r}: expected a positive int")

    def subnet_config(self) -> SubnetConfig:
        n = self.num_blocks
        return SubnetConfig(n, (self.ff_dim,) * n, (self.num_heads,) * n, (self.conv_dim,) * n,
                            self.predictor_dim, self.joiner_dim)


def stages_from_lists(num_blocks, ff_dims, num_heads, conv_dims, predictor_dims, joiner_dims,
                      model_dims=None) -> list[StageSpec]:
    """Per-stage lists (one entry per stage) -> `StageSpec`s; RecipeError on length mismatch."""
    lists = {"stage_num_blocks": num_blocks, "stage_ff_dims": ff_dims, "stage_num_heads": num_heads,
             "stage_conv_dims": conv_dims, "stage_predictor_dims": predictor_dims,
             "stage_joiner_dims": joiner_dims}
    if model_dims:
        lists["stage_model_dims"] = model_dims
    n = len(num_blocks)
    for name, values in lists.items():
        if len(values) != n:
            raise RecipeError(f"--{name} has {len(values)} entries, expected {n} (one per stage)")
    if n < 1:
        raise RecipeError("--stage_num_blocks: expected at least one stage")
    return [StageSpec(int(num_blocks[i]), int(ff_dims[i]), int(num_heads[i]), int(conv_dims[i]),
                      int(predictor_dims[i]), int(joiner_dims[i]),
                      int(model_dims[i]) if model_dims else None) for i in range(n)]


def can_slice(teacher_config: TransducerConfig, spec: StageSpec) -> bool:
    """True when `extract_subnet(teacher, spec.subnet_config())` is possible."""
    from tf_todm.models.elastic import SubnetError, validate_subnet
    if spec.model_dim is not None and spec.model_dim != teacher_config.model_dim:
        return False
    try:
        validate_subnet(teacher_config, spec.subnet_config())
    except SubnetError:
        return False
    return True


def student_from_teacher(teacher: Transducer, spec: StageSpec) -> tuple[Transducer, str]:
    """(student, "slice"|"random"): the teacher's slice when the shapes allow, else a fresh model
    of the spec's size (uniform widths; head_dim = model_dim / num_heads)."""
    from tf_todm.export.extract import extract_subnet
    if can_slice(teacher.config, spec):
        return extract_subnet(teacher, spec.subnet_config()), "slice"
    tc = teacher.config
    d = spec.model_dim or tc.model_dim
    config = tc.replace(model_dim=d, num_blocks=spec.num_blocks, ff_dim=spec.ff_dim,
                        num_heads=spec.num_heads, conv_dim=spec.conv_dim,
                        predictor_dim=spec.predictor_dim, joiner_dim=spec.joiner_dim,
                        head_dim=None if d % spec.num_heads == 0 else tc.resolved_head_dim,
                        block_ff_dims=None, block_num_heads=None, block_conv_dims=None)
    return Transducer(config, name="transducer"), "random"


class TransducerTrainTask(CachedDataTask):
    """Plain label training of a transducer (the from-scratch baseline and teacher training),
    optionally starting from `init_model`'s weights."""

    def __init__(self, model_config: TransducerConfig, train_config, train_utterances: Sequence = (),
                 dev_utterances: Sequence = (), tokenizer=None, init_model: Optional[Transducer] = None):
        if train_config.supernet:
            raise RecipeError(f"{type(self).__name__}: TrainConfig.supernet must be False")
        super().__init__(model_config, train_config, train_utterances, dev_utterances, tokenizer)
        self.init_model = init_model

    def build(self, strategy=None) -> None:
        keras.utils.set_random_seed(self.config.seed)
        self.model = Transducer(self.model_config, name="transducer")
        self.init_feature_normalizer(self.model.encoder.subsampling.feature_norm)
        if self.init_model is not None:
            copy_weights(self.model, self.init_model)
        self.optimizer = self.build_optimizer()
        self.optimizer.build(self.model.trainable_variables)

    def dev_wer(self, max_utterances: int) -> float:
        from tf_todm.recipes.common import evaluate_model
        return evaluate_model("transducer", self.model, self.dev_utterances[:max_utterances],
                              self.tokenizer)["wer"]


class DistillationTask(TransducerTrainTask):
    """One distillation stage: the student (`init_model`'s weights, or random) learns from the
    labels and from the frozen `teacher`'s output distributions (see module docstring).

    `train_config.alpha_min` and `alpha_max` must both be 1 (KL(p_teacher || q_student)).
    """

    def __init__(self, model_config: TransducerConfig, teacher: Transducer, train_config,
                 train_utterances: Sequence = (), dev_utterances: Sequence = (), tokenizer=None,
                 init_model: Optional[Transducer] = None):
        if not (train_config.alpha_min == train_config.alpha_max == 1.0):
            raise RecipeError(f"DistillationTask: alpha_min={train_config.alpha_min}, alpha_max="
                              f"{train_config.alpha_max}: expected both 1.0 (KL(p_teacher||q_student))")
        super().__init__(model_config, train_config, train_utterances, dev_utterances, tokenizer,
                         init_model)
        self.teacher = teacher

    def teacher_targets(self, batch: dict, global_batch_size) -> dict:
        """The teacher's detached soft targets (lattice or band logits, mask, ranges)."""
        student = self.model
        try:
            self.model = self.teacher
            out = self.compute_losses(batch, None, None, global_batch_size, training=False)
        finally:
            self.model = student
        return out["soft_targets"]

    def replica_gradients(self, batch: dict, subnets: list):
        ctx = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local) if ctx else local
        targets = tf.nest.map_structure(tf.stop_gradient, self.teacher_targets(batch, global_batch))
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.compute_losses(batch, None, targets, global_batch, training=True)
        grads = tape.gradient(out["loss"], variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        scalars = {k: v for k, v in out.items() if k not in ("soft_targets", "per_utterance")}
        return grads, scalars


def run_stage(teacher: Transducer, spec: StageSpec, train_config, train_utterances, dev_utterances,
              tokenizer, out_dir: str, strategy=None) -> dict:
    """One distillation stage in `out_dir`: {"model", "init", "params", "summary"}."""
    init_model, init = student_from_teacher(teacher, spec)
    task = DistillationTask(init_model.config, teacher, train_config, train_utterances,
                            dev_utterances, tokenizer, init_model=init_model)
    extra = {"model": init_model.config.to_dict(), "teacher_model": teacher.config.to_dict(),
             "stage": dataclasses.asdict(spec), "init": init}
    summary = run_training(task, train_config, out_dir, extra, strategy=strategy)
    return {"model": task.model, "init": init, "params": int(task.model.count_params()),
            "summary": summary}


def run_progressive(teacher: Transducer, stages: Sequence[StageSpec], train_config,
                    train_utterances, dev_utterances, tokenizer, out_dir: str,
                    strategy=None) -> list[dict]:
    """Stages in `out_dir/stage<k>`; stage k's teacher is stage k-1's student.

    Returns one record per stage: {"model", "teacher", "init", "params", "summary"}.
    """
    records = []
    current = teacher
    for k, spec in enumerate(stages, start=1):
        record = run_stage(current, spec, train_config, train_utterances, dev_utterances,
                           tokenizer, os.path.join(out_dir, f"stage{k}"), strategy)
        record["teacher"] = current
        records.append(record)
        current = record["model"]
    return records


def train_from_scratch(model_config: TransducerConfig, train_config, train_utterances,
                       dev_utterances, tokenizer, out_dir: str, strategy=None) -> dict:
    """Label-only training of `model_config` (random init): {"model", "params", "summary"}."""
    task = TransducerTrainTask(model_config, train_config, train_utterances, dev_utterances,
                               tokenizer)
    summary = run_training(task, train_config, out_dir, {"model": model_config.to_dict()},
                           strategy=strategy)
    return {"model": task.model, "params": int(task.model.count_params()), "summary": summary}
