"""`TransducerTask`: the single-replica part of training (model, inputs, losses, one step's
gradients), kept apart from the distributed loop in `trainer.py` (tensorflow/models style).

Losses are per utterance and normalised by the GLOBAL batch (utterances summed over replicas), so
summing the replicas' gradients gives the gradient of the global-batch mean loss whatever the
number of replicas.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.models.batch_norm_calibration import (calibration_batches, has_batch_norm,
                                                    preserved_batch_norm_statistics, recalibrate_batch_norm)
from tf_todm.models.config import TransducerConfig, search_space as default_search_space
from tf_todm.models.elastic import encode_subnet
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig
from tf_todm.models.transducer import Transducer
from tf_todm.training import sandwich
from tf_todm.training.config import TrainConfig

FRAME_SHIFT_SECONDS = 0.01
"""Hop of the log-mel features (`tf_todm.data.features`: 10 ms)."""


def lattice_mask(enc_lengths, label_lengths, num_frames, width) -> tf.Tensor:
    """f32 [B, T', U+1]: 1 on lattice nodes (t < enc_length, u <= label_length)."""
    t_ok = tf.sequence_mask(enc_lengths, num_frames, tf.float32)[:, :, None]
    u_ok = tf.sequence_mask(label_lengths + 1, width, tf.float32)[:, None, :]
    return t_ok * u_ok


def band_mask(ranges, enc_lengths, label_lengths) -> tf.Tensor:
    """f32 [B, T', S]: 1 on band nodes inside the lattice (first occurrence of a clipped node)."""
    in_lattice = ranges <= tf.cast(label_lengths, tf.int32)[:, None, None]
    fresh = tf.concat([tf.ones_like(ranges[:, :, :1], tf.bool),
                       ranges[:, :, 1:] > ranges[:, :, :-1]], axis=2)
    t_ok = tf.sequence_mask(enc_lengths, tf.shape(ranges)[1])[:, :, None]
    return tf.cast(in_lattice & fresh & t_ok, tf.float32)


def global_mean(per_utterance, global_batch_size) -> tf.Tensor:
    """sum(per_utterance [B]) / global_batch_size: this replica's share of the global-batch mean
    (like `tf.nn.compute_average_loss`, but the global batch may be a traced tensor)."""
    per_utterance = tf.convert_to_tensor(per_utterance, tf.float32)
    return tf.reduce_sum(per_utterance) / tf.cast(global_batch_size, tf.float32)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data order of `epoch` (pure function of (seed, epoch))."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919) % (2 ** 31 - 1)


class TransducerTask:
    """Builds the model/optimizer/inputs and computes one replica's losses and gradients.

    Args:
      model_config: `TransducerConfig` of the model (the supernet when `train_config.supernet`).
      train_config: `TrainConfig`.
      train_utterances / dev_utterances: lists of `tf_todm.data.manifest.Utterance`.
      tokenizer: `tf_todm.data.tokenizer.Tokenizer` (None only for tests feeding batches directly).
      space: search space of the supernet (default: `models.config.search_space(model_config)`).
      eval_subnets: {name: SubnetConfig or None} decoded for dev WER (default: largest and
        smallest for a supernet, the full model otherwise).
    """

    def __init__(self, model_config: TransducerConfig, train_config: TrainConfig,
                 train_utterances: Sequence = (), dev_utterances: Sequence = (),
                 tokenizer=None, space: Optional[SearchSpace] = None,
                 eval_subnets: Optional[dict] = None):
        self.model_config = model_config
        self.config = train_config
        self.train_utterances = list(train_utterances)
        self.dev_utterances = list(dev_utterances)
        self.tokenizer = tokenizer
        self.space = space
        if train_config.supernet and space is None:
            self.space = default_search_space(model_config)
        if eval_subnets is None:
            eval_subnets = ({"largest": self.space.largest(), "smallest": self.space.smallest()}
                            if train_config.supernet else {"model": None})
        self.eval_subnets = eval_subnets
        self.model = None
        self.optimizer = None
        self.lr_schedule = None
        self._rates = {}
        self._encode_fn = None
        self._feature_stats = None
        self._calibration = None

    # --- building ----------------------------------------------------------------------------
    def build(self, strategy=None) -> None:
        """Creates model and optimizer (call inside `strategy.scope()`); seeded init."""
        keras.utils.set_random_seed(self.config.seed)
        self.model = Transducer(self.model_config, name="transducer")
        self.init_feature_normalizer(self.model.encoder.subsampling.feature_norm)
        self.optimizer = self.build_optimizer()
        self.optimizer.build(self.model.trainable_variables)

    def feature_statistics(self, max_utterances: int = 256):
        """Per-bin log-mel (mean, std) `[F]` each, float64, over an evenly spread, deterministic
        subset of at most `max_utterances` training utterances (None without data/tokenizer)."""
        if self._feature_stats is None and self.train_utterances and self.tokenizer is not None:
            from tf_todm.data.features import FeatureNormalizer
            from tf_todm.data.pipeline import make_dataset
            stride = max(1, len(self.train_utterances) // max_utterances)
            subset = self.train_utterances[::stride][:max_utterances]
            dataset = make_dataset(subset, self.tokenizer, batch_size=16, training=False)
            self._feature_stats = FeatureNormalizer.statistics(
                (b["features"].numpy(), b["feature_lengths"].numpy()) for b in dataset)
        return self._feature_stats

    def init_feature_normalizer(self, feature_norm) -> None:
        """Sets a `FeatureNormalizer` to the training statistics (a resumed run then restores the
        same values from its checkpoint)."""
        stats = self.feature_statistics()
        if stats is not None:
            feature_norm.set_statistics(*stats)

    def specaugment(self):
        """The training SpecAugment (None when off); masked cells get the training mean per bin,
        i.e. 0 after the model's feature normalisation."""
        if not self.config.specaugment:
            return None
        from tf_todm.data.specaugment import SpecAugment
        stats = self.feature_statistics()
        return SpecAugment(mask_value=0.0 if stats is None else stats[0])

    def build_optimizer(self, steps_per_epoch: Optional[int] = None):
        """The configured optimizer; its learning-rate schedule is also kept as `self.lr_schedule`
        (a `TimeBudgetDecay` around Eden when `lr_time_decay` is set: the trainer feeds it)."""
        from tf_todm.optim import Eden, ScaledAdam, TimeBudgetDecay
        cfg = self.config
        if steps_per_epoch is None and self.train_utterances:
            steps_per_epoch = self.steps_per_epoch(1)
        schedule = Eden(cfg.base_lr, lr_batches=cfg.lr_batches, lr_epochs=cfg.lr_epochs,
                        warmup_batches=cfg.warmup_batches, warmup_start=cfg.warmup_start,
                        steps_per_epoch=steps_per_epoch or None)
        if cfg.lr_time_decay:
            schedule = TimeBudgetDecay(schedule, cfg.lr_time_decay)
        self.lr_schedule = schedule
        if cfg.optimizer == "scaled_adam":
            return ScaledAdam(learning_rate=schedule,
                              clipping_scale=cfg.clipping_scale or None)
        return keras.optimizers.Adam(learning_rate=schedule,
                                     global_clipnorm=cfg.clipping_scale or None)

    # --- inputs ------------------------------------------------------------------------------
    def steps_per_epoch(self, num_replicas: int = 1) -> int:
        """Global steps per epoch (fixed, so that all replicas run the same number of steps)."""
        cfg = self.config
        if cfg.batch_size:
            return len(self.train_utterances) // cfg.batch_size
        total = sum(u.duration for u in self.train_utterances)
        return int(total // cfg.max_batch_seconds)

    def make_dataset(self, input_context: Optional[tf.distribute.InputContext] = None,
                     epoch: int = 0, training: bool = True) -> tf.data.Dataset:
        """Per-replica batches of epoch `epoch` (order a pure function of (seed, epoch))."""
        from tf_todm.data.pipeline import make_dataset
        cfg = self.config
        replicas = input_context.num_replicas_in_sync if input_context else 1
        kwargs = {}
        if cfg.batch_size:  # make_dataset takes GLOBAL sizes and divides them by the replicas
            if cfg.batch_size % replicas:
                raise ValueError(f"TrainConfig.batch_size={cfg.batch_size}: must be divisible by "
                                 f"the {replicas} replicas")
            kwargs["batch_size"] = cfg.batch_size
        else:
            kwargs["max_batch_seconds"] = cfg.max_batch_seconds
        utterances = self.train_utterances if training else self.dev_utterances
        augment = training and epoch >= cfg.augment_from_epoch
        specaugment = self.specaugment() if augment else None
        return make_dataset(utterances, self.tokenizer, training=training,
                            input_context=input_context, seed=epoch_seed(cfg.seed, epoch),
                            specaugment=specaugment, speed_perturb=cfg.speed_perturb if augment else 0.0,
                            vtlp=cfg.vtlp if augment else 0.0,
                            **kwargs)

    @staticmethod
    def audio_seconds(batch) -> float:
        return float(tf.reduce_sum(batch["feature_lengths"]).numpy()) * FRAME_SHIFT_SECONDS

    # --- subnets -----------------------------------------------------------------------------
    def subnet_rates(self, subnet_config: SubnetConfig) -> tuple[float, float]:
        """(dropout, layer drop) of a subnet: linear in its parameter count between the
        smallest (`*_min`) and the largest (`*_max`) subnet."""
        key = subnet_config.key()
        if key not in self._rates:
            from tf_todm.models.param_count import count_params
            cfg = self.config
            size = count_params(self.model_config, subnet_config)
            lo = count_params(self.model_config, self.space.smallest())
            hi = count_params(self.model_config, self.space.largest())
            self._rates[key] = (
                sandwich.linear_rate(size, lo, hi, cfg.dropout_min, cfg.dropout_max),
                sandwich.linear_rate(size, lo, hi, cfg.layer_drop_min, cfg.layer_drop_max))
        return self._rates[key]

    def encode(self, subnet_config: SubnetConfig, training: bool = True) -> dict:
        dropout, layer_drop = self.subnet_rates(subnet_config) if training else (0.0, 0.0)
        return encode_subnet(self.model_config, subnet_config, dropout_rate=dropout,
                             layer_drop_rate=layer_drop)

    def subnet_configs_for_step(self, step: int) -> list[SubnetConfig]:
        """`[largest]` during the first `largest_only_steps`, then the sandwich of the step."""
        cfg = self.config
        if step < cfg.largest_only_steps:
            return [self.space.largest()]
        return sandwich.sample_sandwich(self.space, cfg.seed, step, cfg.num_random_subnets)

    def subnets_for_step(self, step: int) -> list:
        """Tensor encodings of this step's subnets (`[]` = plain training of the full model)."""
        if not self.config.supernet:
            return []
        return [self.encode(s) for s in self.subnet_configs_for_step(step)]

    # --- losses ------------------------------------------------------------------------------
    def joiner_logits(self, enc, pred, subnet):
        """Full lattice logits [B, T', U+1, V]."""
        joiner = self.model.joiner
        return joiner.join(joiner.project_encoder(enc, subnet)[:, :, None, :],
                           joiner.project_predictor(pred, subnet)[:, None, :, :])

    def compute_losses(self, batch: dict, subnet=None, teacher=None, global_batch_size=None,
                       training: bool = True) -> dict:
        """Losses of one subnet on one replica's batch.

        Args:
          batch: dict (see CONTRACTS.md, data pipeline).
          subnet: tensor encoding or None (full model).
          teacher: soft targets of the largest subnet (dict from a previous call) or None. With a
            teacher the loss is `kd_weight * KD + label_loss_weight * label loss`, else the label
            loss alone.
          global_batch_size: utterances in the global batch (default: this batch).

        Returns:
          dict: "loss" (scalar, sum over utterances / global batch), per-subnet scalar parts
          ("rnnt", "ctc", "kd", each a global-batch mean), "per_utterance" [B] total, and
          "soft_targets" (detached logits + mask) for distillation.
        """
        cfg = self.config
        model = self.model
        features, feature_lengths = batch["features"], batch["feature_lengths"]
        labels, label_lengths = batch["labels"], batch["label_lengths"]
        if global_batch_size is None:
            global_batch_size = tf.shape(labels)[0]
        enc, enc_lengths = model.encode(features, feature_lengths, subnet=subnet, training=training)
        pred = model.predict(labels, subnet=subnet, training=training)
        parts = {}
        logits = None
        if cfg.loss == "exact":
            logits = self.joiner_logits(enc, pred, subnet)
            from tf_todm.losses.rnnt import rnnt_loss
            parts["rnnt"] = rnnt_loss(logits, labels, enc_lengths, label_lengths, blank=BLANK_ID,
                                      jit=cfg.xla_loss, jit_recursion=cfg.xla_loss)
            targets_mask = lattice_mask(enc_lengths, label_lengths, tf.shape(logits)[1],
                                        tf.shape(logits)[2])
            soft_targets = {"logits": tf.stop_gradient(logits), "mask": targets_mask}
        else:
            parts_pruned, soft_targets, logits = self._pruned_losses(
                enc, enc_lengths, pred, labels, label_lengths, subnet, teacher)
            parts.update(parts_pruned)
        if cfg.ctc_weight > 0:
            from tf_todm.losses import ctc_loss
            parts["ctc"] = ctc_loss(model.ctc_logits(enc), labels, enc_lengths, label_lengths,
                                    blank=BLANK_ID)
        label_loss = parts["rnnt"] + (cfg.ctc_weight * parts["ctc"] if "ctc" in parts else 0.0)
        if teacher is not None:
            parts["kd"] = self._kd_loss(teacher, logits, enc_lengths)
            per_utt = cfg.kd_weight * parts["kd"] + cfg.label_loss_weight * label_loss
        else:
            per_utt = label_loss
        out = {k: global_mean(v, global_batch_size) for k, v in parts.items()}
        out["loss"] = global_mean(per_utt, global_batch_size)
        out["per_utterance"] = per_utt
        out["soft_targets"] = soft_targets
        return out

    def _kd_loss(self, teacher: dict, student_logits, enc_lengths) -> tf.Tensor:
        """Adaptive alpha-divergence between the teacher's and the student's joiner outputs: [B].

        The divergence is averaged over the valid lattice (or band) nodes and multiplied by the
        number of encoder frames, so it scales with the utterance like the transducer loss.
        """
        from tf_todm.losses import adaptive_alpha_divergence
        cfg = self.config
        mean_kd = adaptive_alpha_divergence(
            teacher["logits"], student_logits, alpha_min=cfg.alpha_min, alpha_max=cfg.alpha_max,
            iw_clip=cfg.iw_clip, mask=teacher["mask"])
        return mean_kd * tf.cast(enc_lengths, tf.float32)

    def _pruned_losses(self, enc, enc_lengths, pred, labels, label_lengths, subnet, teacher):
        """Simple loss + pruned loss; students use the TEACHER's band, so their band logits and
        the teacher's soft targets are at the same lattice nodes."""
        from tf_todm.losses import get_prune_ranges, pruned_rnnt_loss, rnnt_loss_simple
        from tf_todm.losses.pruned_rnnt import gather_band
        cfg = self.config
        joiner = self.model.joiner
        am, lm = self.model.simple_heads(enc, pred)
        simple, occupancy = rnnt_loss_simple(am, lm, labels, enc_lengths, label_lengths, BLANK_ID,
                                             jit_recursion=cfg.xla_loss)
        if teacher is None:
            ranges = get_prune_ranges(occupancy, enc_lengths, label_lengths, cfg.prune_range)
        else:
            ranges = teacher["ranges"]
        enc_proj = joiner.project_encoder(enc, subnet)
        pred_proj = joiner.project_predictor(pred, subnet)
        shape = tf.shape(enc_proj)
        enc_band = tf.broadcast_to(enc_proj[:, :, None, :],
                                   [shape[0], shape[1], cfg.prune_range, shape[2]])
        logits = joiner.join(enc_band, gather_band(pred_proj, ranges))  # [B, T', S, V]
        pruned = pruned_rnnt_loss(logits, ranges, labels, enc_lengths, label_lengths, BLANK_ID,
                                  jit=cfg.xla_loss, jit_recursion=cfg.xla_loss)
        parts = {"simple": simple, "pruned": pruned, "rnnt": cfg.simple_loss_scale * simple + pruned}
        soft_targets = {"logits": tf.stop_gradient(logits), "ranges": ranges,
                        "mask": band_mask(ranges, enc_lengths, label_lengths)}
        return parts, soft_targets, logits

    # --- one replica's step ------------------------------------------------------------------
    def replica_gradients(self, batch: dict, subnets: list):
        """Summed gradients over the sandwich (or the full model when `subnets` is empty)."""
        ctx = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(batch["labels"])[0], tf.float32)
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local) if ctx else local

        def losses(b, subnet, teacher, gbs):
            return self.compute_losses(b, subnet, teacher, gbs, training=True)

        return sandwich.sandwich_gradients(losses, self.model.trainable_variables, batch,
                                           list(subnets) or [None], global_batch)

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, max_utterances: int = 200, batch_size: int = 8) -> dict:
        """Dev WER (greedy decoding) of each evaluation subnet: {"dev_wer/<name>": wer}. A BatchNorm
        supernet re-estimates each subnet's statistics first and gets its training ones back after."""
        from tf_todm.data.pipeline import make_dataset
        from tf_todm.decoding import greedy_decode, transcribe
        from tf_todm.metrics import wer
        utterances = self.dev_utterances[:max_utterances]
        if not utterances:
            return {}
        dataset = make_dataset(utterances, self.tokenizer, batch_size=batch_size, training=False,
                               seed=0, specaugment=False)
        if self._encode_fn is None:
            self._encode_fn = tf.function(
                lambda f, n, s: self.model.encode(f, n, subnet=s, training=False),
                reduce_retracing=True, autograph=False)
        results = {}
        calibration = self.calibration_batches()
        with preserved_batch_norm_statistics(self.model):
            for name, subnet_config in self.eval_subnets.items():
                subnet = None if subnet_config is None else self.encode(subnet_config, training=False)
                if calibration and subnet is not None:
                    recalibrate_batch_norm(self.model, calibration, subnet)
                def decode_ids(batch, subnet=subnet):
                    enc, enc_lengths = self._encode_fn(batch["features"], batch["feature_lengths"], subnet)
                    return greedy_decode(self.model, enc, enc_lengths, subnet=subnet)
                refs, hyps = transcribe(dataset, self.tokenizer, decode_ids)
                results[f"dev_wer/{name}"] = float(wer(refs, hyps))
        return results

    def calibration_batches(self, num_batches: int = 8, batch_size: int = 16) -> list:
        """Training batches (`batch_norm_calibration.calibration_batches`, built once) for re-estimating a
        BatchNorm supernet's statistics per subnet; [] when the model has no BatchNorm."""
        if not has_batch_norm(self.model) or not self.train_utterances:
            return []
        if self._calibration is None:
            self._calibration = calibration_batches(self.train_utterances, self.tokenizer, batch_size, num_batches)
        return self._calibration
