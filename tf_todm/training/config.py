"""`TrainConfig`: every training hyperparameter in one frozen dataclass, with strict overrides.

An override naming a key that does not exist is an error (`ConfigError` naming the key), so a typo
in a flagfile cannot silently train the defaults. The final config is written as JSON next to the
checkpoints (see `checkpoints.write_json_atomic`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Sequence


class ConfigError(ValueError):
    """A user mistake in a training configuration (unknown key, bad value)."""


LOSSES = ("exact", "pruned")
STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("scaled_adam", "adam")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (single model or supernet).

    Args:
      train_manifest / dev_manifest: JSONL manifests (see `tf_todm.data.manifest`).
      tokenizer_path: SentencePiece `.model` file.
      max_batch_seconds: audio seconds per GLOBAL batch (bucketed batching); used when
        `batch_size` is 0.
      batch_size: fixed global number of utterances per batch (0 = use `max_batch_seconds`).
      specaugment: apply SpecAugment to training features.
      speed_perturb: training audio is played at a per-utterance speed factor drawn uniformly in
        [1 - speed_perturb, 1 + speed_perturb] (`tf_todm.data.speed_perturbation`); 0 = off.
      vtlp: training log-mel features are warped along frequency by a per-utterance factor drawn
        uniformly in [1 - vtlp, 1 + vtlp] (`tf_todm.data.vtlp`, vocal tract length perturbation);
        0 = off.
      augment_from_epoch: SpecAugment, speed perturbation and VTLP apply from this epoch on (0 = from
        the start): a model must first leave the blank plateau, which augmentation delays.
      num_epochs: passes over the training set.
      max_steps: stop after this many optimizer steps (0 = no limit).
      max_train_minutes: wall-clock limit of the run, counted across resumes
        (`TrainState.train_seconds`); the run stops cleanly with a final checkpoint (0 = none).
      lr_time_decay: the final fraction of `max_train_minutes` over which the learning rate falls
        linearly to 0 (`tf_todm.optim.TimeBudgetDecay`); 0 = off. Needs `max_train_minutes`.
      optimizer: "scaled_adam" (with Eden) or "adam" (with Eden, for comparison).
      base_lr, lr_batches, lr_epochs, warmup_batches, warmup_start: Eden schedule.
      clipping_scale: ScaledAdam clipping scale (x median gradient norm); 0 disables.
      loss: "exact" (full-lattice RNN-T) or "pruned" (k2-style pruned RNN-T + simple loss).
      prune_range: band width S of the pruned loss.
      simple_loss_scale: weight of the simple (trivial-joiner) loss in the pruned loss.
      xla_loss: XLA-compile the losses' vocabulary-axis work and forward-backward recursion on
        shapes padded to bucket sizes (`losses.shape_buckets`); False (default) runs plain TF
        ops. Same values either way; on the issue-3 recipe (V=64, pruned loss) plain TF steps
        are faster (experiments/benchmark_train_step.py, WORKSPACE.md).
      ctc_weight: weight of an auxiliary CTC loss on the encoder (0 = off; needs the CTC head).
      supernet: sandwich-rule supernet training (else only the full model is trained).
      num_random_subnets: k random subnets per step besides the largest and smallest.
      largest_only_steps: the first N optimizer steps train only the largest subnet on the
        labels (no students), so the in-place teacher has left the blank plateau before it
        distils; 0 = sandwich from the first step.
      kd_weight: weight of the alpha-divergence to the largest subnet for sampled subnets.
      label_loss_weight: weight of the label (RNN-T) loss for sampled subnets.
      alpha_min / alpha_max / iw_clip: adaptive alpha-divergence settings (AlphaNet).
      dropout_max / dropout_min: adaptive dropout of the largest / smallest subnet.
      layer_drop_max / layer_drop_min: adaptive layer drop of the largest / smallest subnet.
      log_every_steps, checkpoint_every_steps, eval_every_steps: loop periods in steps
        (0 disables periodic checkpoints / evals; a final checkpoint is always written).
      max_checkpoints_to_keep: checkpoints kept on disk (`Checkpointer(max_to_keep=...)`).
      eval_max_utterances: dev utterances decoded per periodic WER evaluation.
      seed: seed of model init, data order, subnet sampling.
      strategy: "default", "mirrored" (N logical CPU devices) or "multi_worker" (TF_CONFIG).
      num_replicas: logical CPU devices for "mirrored".
      max_consecutive_nonfinite: stop with an error after this many skipped (NaN/Inf) steps in a row.
    """

    train_manifest: str = ""
    dev_manifest: str = ""
    tokenizer_path: str = ""
    max_batch_seconds: float = 64.0
    batch_size: int = 0
    specaugment: bool = True
    speed_perturb: float = 0.0
    vtlp: float = 0.0
    augment_from_epoch: int = 0
    num_epochs: int = 10
    max_steps: int = 0
    max_train_minutes: float = 0.0
    lr_time_decay: float = 0.0
    optimizer: str = "scaled_adam"
    base_lr: float = 0.045
    lr_batches: float = 5000.0
    lr_epochs: float = 6.0
    warmup_batches: float = 500.0
    warmup_start: float = 0.1
    clipping_scale: float = 2.0
    loss: str = "pruned"
    prune_range: int = 5
    simple_loss_scale: float = 0.5
    xla_loss: bool = False
    ctc_weight: float = 0.0
    supernet: bool = True
    num_random_subnets: int = 2
    largest_only_steps: int = 0
    kd_weight: float = 1.0
    label_loss_weight: float = 0.5
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    iw_clip: float = 5.0
    dropout_max: float = 0.1
    dropout_min: float = 0.0
    layer_drop_max: float = 0.0
    layer_drop_min: float = 0.0
    log_every_steps: int = 10
    checkpoint_every_steps: int = 200
    max_checkpoints_to_keep: int = 3
    eval_every_steps: int = 0
    eval_max_utterances: int = 200
    seed: int = 0
    strategy: str = "default"
    num_replicas: int = 2
    max_consecutive_nonfinite: int = 10

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, _field_type(f), value))
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("num_epochs", "prune_range", "num_replicas", "max_consecutive_nonfinite",
                     "log_every_steps", "max_checkpoints_to_keep"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.speed_perturb < 0.5:
            raise ConfigError(f"TrainConfig.speed_perturb must be in [0, 0.5), got {self.speed_perturb}")
        if not 0.0 <= self.vtlp < 0.5:
            raise ConfigError(f"TrainConfig.vtlp must be in [0, 0.5), got {self.vtlp}")
        for name in ("max_steps", "batch_size", "num_random_subnets", "largest_only_steps", "augment_from_epoch",
                     "checkpoint_every_steps",
                     "eval_every_steps", "eval_max_utterances", "max_train_minutes", "kd_weight",
                     "label_loss_weight", "ctc_weight", "simple_loss_scale", "clipping_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.lr_time_decay <= 1.0:
            raise ConfigError(f"TrainConfig.lr_time_decay must be in [0, 1], got {self.lr_time_decay}")
        if self.lr_time_decay and not self.max_train_minutes:
            raise ConfigError("TrainConfig.lr_time_decay needs max_train_minutes > 0 (it decays over the end "
                              "of that budget)")
        if self.batch_size == 0 and self.max_batch_seconds <= 0:
            raise ConfigError("TrainConfig: set batch_size > 0 or max_batch_seconds > 0")
        if self.base_lr <= 0:
            raise ConfigError(f"TrainConfig.base_lr must be > 0, got {self.base_lr}")
        if not self.alpha_min <= self.alpha_max:
            raise ConfigError(
                f"TrainConfig.alpha_min={self.alpha_min} must be <= alpha_max={self.alpha_max}")
        if self.iw_clip <= 0:
            raise ConfigError(f"TrainConfig.iw_clip must be > 0, got {self.iw_clip}")
        for lo, hi in (("dropout_min", "dropout_max"), ("layer_drop_min", "layer_drop_max")):
            a, b = getattr(self, lo), getattr(self, hi)
            if not 0.0 <= a <= b < 1.0:
                raise ConfigError(f"TrainConfig: need 0 <= {lo}={a} <= {hi}={b} < 1")

    # --- overrides and serialisation ---------------------------------------------------------
    def replace(self, **overrides: Any) -> "TrainConfig":
        """A copy with `overrides` applied; an unknown key raises `ConfigError` naming it."""
        return override(self, overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        return override(cls(), d)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))


def override(config, overrides: Mapping[str, Any]):
    """`config` (any frozen dataclass) with `overrides` applied; unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(
            f"{type(config).__name__}: unknown key {unknown[0]!r}"
            + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
            + f"; known keys: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **dict(overrides))


def parse_overrides(config, items: Sequence[str]):
    """Applies `["key=value", ...]` strings, each value parsed by the field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    parsed = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise ConfigError(f"{type(config).__name__}: unknown key {key!r} in override {item!r}")
        parsed[key] = _parse_text(key, _field_type(fields[key]), text.strip())
    return override(config, parsed)


# --- helpers -------------------------------------------------------------------------------
def _field_type(f: dataclasses.Field):
    t = f.type
    if isinstance(t, str):
        t = {"str": str, "int": int, "float": float, "bool": bool}.get(t, t)
    return t


def _parse_optional(name: str, t: str, text: str):
    """Values of `Optional[int]` / `Optional[tuple]` fields (other frozen configs)."""
    if text.lower() in ("none", "null", ""):
        return None
    if "int" in t:
        return _parse_text(name, int, text)
    if "float" in t:
        return _parse_text(name, float, text)
    if "tuple" in t:
        try:
            return tuple(int(v) for v in text.replace(",", " ").split())
        except ValueError:
            raise ConfigError(f"override {name}={text!r}: expected comma-separated ints") from None
    return text


def _coerce(name: str, t, value):
    if t is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"TrainConfig.{name}: expected true/false, got {value!r}")
    if t is int:
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"TrainConfig.{name}: expected an integer, got {value!r}")
        return int(value)
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"TrainConfig.{name}: expected a number, got {value!r}")
        return float(value)
    if t is str:
        if not isinstance(value, str):
            raise ConfigError(f"TrainConfig.{name}: expected a string, got {value!r}")
        return value
    return value


def _parse_text(name: str, t, text: str):
    try:
        if t is bool:
            low = text.lower()
            if low in ("1", "true", "yes"):
                return True
            if low in ("0", "false", "no"):
                return False
            raise ValueError(text)
        if t is int:
            return int(text)
        if t is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"override {name}={text!r}: expected {t.__name__}") from None
    if isinstance(t, str) and t.startswith("Optional"):
        return _parse_optional(name, t, text)
    return text


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"TrainConfig.{name}={value!r}: expected one of {list(choices)}")

