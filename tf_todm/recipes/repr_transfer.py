"""Two-stage representation transfer to a light-weight CTC model (after Hannan et al. 2025, A2).

Stage 1 ("EncRL"): a large reference encoder is FROZEN (a trained `Transducer`'s encoder, or a
supernet's largest subnet via `tf_todm.export.extract.extract_subnet`). A shallow encoder (the
reference's widths, fewer Conformer blocks: `shallow_config(reference, reduction)`, e.g. reduction
0.5 / 0.667 / 0.833) plus a linear projection to the reference width learns to reproduce the
reference's frame representations:

    loss = mse_weight * MSE(proj(student), reference) + infonce_weight * InfoNCE(...)

MSE per utterance over valid frames (`tf_todm.losses.mse_representation_loss`, global-batch mean);
InfoNCE is the CLIP-style symmetric frame contrastive loss over the valid frames of the batch
(`tf_todm.losses.infonce_frame_loss`). Both encoders share the 4x subsampling, so frames align.

Stage 2: a linear CTC head on the shallow encoder; encoder + head fine-tuned with `ctc_loss` for a
few epochs (the projection is dropped: it is a training aid, not part of the deployed model).

The deployed model is `CtcModel` (encoder + CTC head); `deploy_params(model)` counts it.
Baseline: the same `CtcModel` trained from scratch with CTC (`CtcTask` without initial weights).
Training runs through the project `Trainer` (checkpoints, progress, strategy).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import keras
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.models.config import TransducerConfig
from tf_todm.models.transducer import build_encoder
from tf_todm.recipes.common import CachedDataTask, RecipeError, copy_weights
from tf_todm.training.task import global_mean


@keras.saving.register_keras_serializable(package="tf_todm")
class CtcModel(keras.Model):
    """Conformer encoder + linear projection (stage-1 aid) + linear CTC head.

    Args:
      config: `TransducerConfig` (or dict) of the encoder; predictor/joiner fields are unused.
      projection_dim: width of the reference representation the projection maps to
        (None: no projection).

    `encode(features [B,T,F], feature_lengths [B]) -> (enc [B,T',D], enc_lengths [B])`,
    `project(enc) -> [B,T',projection_dim]`, `ctc_logits(enc) -> [B,T',V]`.
    """

    def __init__(self, config: Union[TransducerConfig, dict], projection_dim: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = TransducerConfig.from_dict(config)
        self.config = config
        self.projection_dim = projection_dim
        self.encoder = build_encoder(config)
        self.projection = (keras.layers.Dense(projection_dim, name="projection")
                           if projection_dim else None)
        self.ctc_head = keras.layers.Dense(config.vocab_size, name="ctc_head")
        self.build()

    def build(self, input_shape=None):
        self.encoder.build()
        if self.projection is not None:
            self.projection.build((None, self.config.model_dim))
        self.ctc_head.build((None, self.config.model_dim))
        self.built = True

    def encode(self, features, feature_lengths, training=False):
        return self.encoder(features, feature_lengths, training=training)

    def project(self, enc):
        if self.projection is None:
            raise RecipeError("CtcModel.project: built without projection_dim")
        return self.projection(enc)

    def ctc_logits(self, enc):
        return self.ctc_head(enc)

    def call(self, inputs, training=False):
        enc, lengths = self.encode(inputs["features"], inputs["feature_lengths"], training)
        return {"logits": self.ctc_logits(enc), "logit_lengths": lengths}

    def get_config(self):
        return {"config": self.config.to_dict(), "projection_dim": self.projection_dim,
                "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def deploy_params(model: CtcModel) -> int:
    """Parameters of the deployed CTC model (encoder + CTC head; projection excluded)."""
    return int(model.encoder.count_params() + model.ctc_head.count_params())


def shallow_num_blocks(reference_blocks: int, reduction: float) -> int:
    """Blocks kept when removing the fraction `reduction` of `reference_blocks` (>= 1).

    E.g. 12 blocks: reduction 0.5 -> 6, 0.667 -> 4, 0.833 -> 2.
    """
    if not 0.0 <= reduction < 1.0:
        raise RecipeError(f"reduction={reduction}: expected 0 <= reduction < 1")
    return max(1, int(round(reference_blocks * (1.0 - reduction))))


def shallow_config(reference: TransducerConfig, reduction: float, **overrides) -> TransducerConfig:
    """The student's encoder config: the reference's uniform widths with fewer blocks.

    Per-block widths of an extracted reference are replaced by the first block's widths
    (uniform student); `overrides` change any field (e.g. `model_dim`).
    """
    ff, heads, conv = reference.block_dims(0)
    changes = dict(num_blocks=shallow_num_blocks(reference.num_blocks, reduction), ff_dim=ff,
                   num_heads=heads, conv_dim=conv, head_dim=reference.resolved_head_dim,
                   block_ff_dims=None, block_num_heads=None, block_conv_dims=None,
                   use_ctc_head=True)
    changes.update(overrides)
    return reference.replace(**changes)


@dataclasses.dataclass(frozen=True)
class ReprLossConfig:
    """Stage-1 loss weights. temperature and max_frames: see `infonce_frame_loss`."""

    mse_weight: float = 1.0
    infonce_weight: float = 1.0
    temperature: float = 0.1
    max_frames: int = 512

    def __post_init__(self):
        if self.mse_weight < 0 or self.infonce_weight < 0 or self.mse_weight + self.infonce_weight == 0:
            raise RecipeError(f"ReprLossConfig: mse_weight={self.mse_weight}, infonce_weight="
                              f"{self.infonce_weight}: expected non-negative and not both 0")
        if self.temperature <= 0:
            raise RecipeError(f"ReprLossConfig.temperature={self.temperature}: expected > 0")
        if self.max_frames < 2:
            raise RecipeError(f"ReprLossConfig.max_frames={self.max_frames}: expected >= 2")


def representation_losses(student_proj, reference, lengths, loss_config: ReprLossConfig,
                          global_batch_size, num_replicas: int = 1) -> dict:
    """Stage-1 losses of one replica: {"mse", "infonce", "loss"} scalars.

    MSE is a global-batch mean (per-utterance sum / global batch); InfoNCE (a per-replica batch
    statistic) is divided by `num_replicas` so that summing replicas gives their mean.
    """
    from tf_todm.losses import infonce_frame_loss, mse_representation_loss
    mse = global_mean(mse_representation_loss(student_proj, reference, lengths), global_batch_size)
    nce = infonce_frame_loss(student_proj, reference, lengths, loss_config.temperature,
                             loss_config.max_frames) / float(num_replicas)
    loss = loss_config.mse_weight * mse + loss_config.infonce_weight * nce
    return {"mse": mse, "infonce": nce, "loss": loss}


class _CtcModelTask(CachedDataTask):
    """Shared build/eval of the CTC-model tasks (the model is a `CtcModel`)."""

    projection_dim: Optional[int] = None
    init_model: Optional[CtcModel] = None

    def _freeze(self, model: CtcModel) -> None:
        raise NotImplementedError

    def build(self, strategy=None) -> None:
        keras.utils.set_random_seed(self.config.seed)
        self.model = CtcModel(self.model_config, projection_dim=self.projection_dim, name="ctc_model")
        self.init_feature_normalizer(self.model.encoder.subsampling.feature_norm)
        if self.init_model is not None:
            copy_weights(self.model, self.init_model)
        self._freeze(self.model)
        self.optimizer = self.build_optimizer()
        self.optimizer.build(self.model.trainable_variables)

    def dev_wer(self, max_utterances: int) -> float:
        from tf_todm.recipes.common import evaluate_model
        return evaluate_model("ctc", self.model, self.dev_utterances[:max_utterances],
                              self.tokenizer)["wer"]


class ReprTransferTask(_CtcModelTask):
    """Stage 1: shallow encoder + projection learn the frozen reference's representations.

    Args:
      student_config: `TransducerConfig` of the shallow encoder (`shallow_config`).
      reference: any object with `encode(features, lengths, training=False) -> (enc, lengths)`
        and a `config.model_dim` (a trained `Transducer`); it is never trained.
      train_config: `TrainConfig` (`supernet` must be False).
      loss_config: `ReprLossConfig`.
      train_utterances, dev_utterances, tokenizer: as `TransducerTask`.
    """

    def __init__(self, student_config: TransducerConfig, reference, train_config,
                 loss_config: ReprLossConfig = ReprLossConfig(), train_utterances: Sequence = (),
                 dev_utterances: Sequence = (), tokenizer=None):
        if train_config.supernet:
            raise RecipeError("ReprTransferTask: TrainConfig.supernet must be False")
        super().__init__(student_config, train_config, train_utterances, dev_utterances, tokenizer)
        self.reference = reference
        self.loss_config = loss_config
        self.projection_dim = int(reference.config.model_dim)

    def _freeze(self, model):
        model.ctc_head.trainable = False  # stage 2 trains it

    def replica_gradients(self, batch: dict, subnets: list):
        ctx = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local) if ctx else local
        replicas = ctx.num_replicas_in_sync if ctx else 1
        ref_enc, _ = self.reference.encode(batch["features"], batch["feature_lengths"],
                                           training=False)
        ref_enc = tf.stop_gradient(ref_enc)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            enc, lengths = self.model.encode(batch["features"], batch["feature_lengths"],
                                             training=True)
            out = representation_losses(self.model.project(enc), ref_enc, lengths,
                                        self.loss_config, global_batch, replicas)
        grads = tape.gradient(out["loss"], variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        return grads, out


class CtcTask(_CtcModelTask):
    """Stage 2 (with `init_model` = the stage-1 model) or the from-scratch baseline (None):
    encoder + CTC head trained with `ctc_loss` (global-batch mean)."""

    def __init__(self, model_config: TransducerConfig, train_config, train_utterances: Sequence = (),
                 dev_utterances: Sequence = (), tokenizer=None, init_model: Optional[CtcModel] = None):
        if train_config.supernet:
            raise RecipeError("CtcTask: TrainConfig.supernet must be False")
        super().__init__(model_config, train_config, train_utterances, dev_utterances, tokenizer)
        self.init_model = init_model
        self.projection_dim = init_model.projection_dim if init_model is not None else None

    def _freeze(self, model):
        if model.projection is not None:
            model.projection.trainable = False  # stage-1 aid only

    def replica_gradients(self, batch: dict, subnets: list):
        from tf_todm.losses import ctc_loss
        ctx = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local) if ctx else local
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            enc, lengths = self.model.encode(batch["features"], batch["feature_lengths"],
                                             training=True)
            nll = ctc_loss(self.model.ctc_logits(enc), batch["labels"], lengths,
                           batch["label_lengths"], blank=BLANK_ID)
            loss = global_mean(nll, global_batch)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        return grads, {"ctc": loss, "loss": loss}


def run_repr_transfer(reference, student_config: TransducerConfig, stage1_config, stage2_config,
                      loss_config: ReprLossConfig, train_utterances, dev_utterances, tokenizer,
                      out_dir: str, strategy=None) -> dict:
    """Stage 1 then stage 2 in `out_dir/stage1`, `out_dir/stage2`.

    Returns {"model": the stage-2 `CtcModel`, "stage1": summary, "stage2": summary,
    "stage1_model": the stage-1 `CtcModel`}.
    """
    import os

    from tf_todm.recipes.common import run_training
    extra = {"model": student_config.to_dict(), "reference_model": reference.config.to_dict(),
             "repr_loss": dataclasses.asdict(loss_config)}
    stage1 = ReprTransferTask(student_config, reference, stage1_config, loss_config,
                              train_utterances, dev_utterances, tokenizer)
    s1 = run_training(stage1, stage1_config, os.path.join(out_dir, "stage1"), extra,
                      eval_each_epoch=False, strategy=strategy)
    stage2 = CtcTask(student_config, stage2_config, train_utterances, dev_utterances, tokenizer,
                     init_model=stage1.model)
    s2 = run_training(stage2, stage2_config, os.path.join(out_dir, "stage2"), extra,
                      strategy=strategy)
    return {"model": stage2.model, "stage1_model": stage1.model, "stage1": s1, "stage2": s2}
