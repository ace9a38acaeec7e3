"""tf_todm.recipes: companion training recipes built on the project trainer.

Public API:
  repr_transfer: CtcModel, deploy_params, shallow_config, shallow_num_blocks, ReprLossConfig,
    representation_losses, ReprTransferTask (stage 1), CtcTask (stage 2 / scratch),
    run_repr_transfer
  progressive_kd: StageSpec, stages_from_lists, can_slice, student_from_teacher,
    TransducerTrainTask, DistillationTask, run_stage, run_progressive, train_from_scratch
  common: RecipeError, CachedDataTask, run_training, load_transducer, evaluate_model
"""

from tf_todm.recipes.common import (RecipeError, CachedDataTask, evaluate_model, load_transducer,
                                    run_training)

__all__ = ["RecipeError", "CachedDataTask", "evaluate_model", "load_transducer", "run_training"]
