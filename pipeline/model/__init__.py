"""The search space of the tuning guide and the KerasTuner HyperModel that builds it.

``space`` turns ``params.yaml: search_space`` into KerasTuner hyperparameters;
``initializers``, ``regularizers``, ``optimizers``, ``schedules``, ``losses`` and
``architectures`` build one piece each; ``hypermodel`` assembles them. This package
never reads params.yaml: stages pass it a validated ``SearchSpaceConfig``.
"""

from pipeline.model.architectures import build_network, effective_blocks
from pipeline.model.hypermodel import CNNHyperModel
from pipeline.model.schedules import ScheduleCallback, learning_rate_at
from pipeline.model.space import declare_hyperparameters, hyperparameters_from_values

__all__ = [
    "CNNHyperModel",
    "ScheduleCallback",
    "build_network",
    "declare_hyperparameters",
    "effective_blocks",
    "hyperparameters_from_values",
    "learning_rate_at",
]
