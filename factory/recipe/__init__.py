"""The recipe: one YAML file describing a whole study, validated strictly before any work starts.

`schema` declares every section and the configs a recipe builds, `loading` reads a file
(interpolation, validation, the build's identity) and `where` locates keys for error messages.
This package imports nothing else from cot-factory.
"""

from factory.recipe.loading import load_recipe, recipe_hash
from factory.recipe.schema import (
    CONFIG_NAME,
    DROP_REASONS,
    AlpacaSource,
    Columns,
    ConfigPlan,
    Cot,
    DatasetSpec,
    EvalSpec,
    FilesSource,
    GymSource,
    HubSource,
    OpenAITeacher,
    Recipe,
    RecipeError,
    ReplayTeacher,
    Source,
    SpaceSpec,
    Student,
    TrainSpec,
    TransformersTeacher,
    plan_configs,
    student_name,
    teacher_name,
)

__all__ = [
    "CONFIG_NAME",
    "DROP_REASONS",
    "AlpacaSource",
    "Columns",
    "ConfigPlan",
    "Cot",
    "DatasetSpec",
    "EvalSpec",
    "FilesSource",
    "GymSource",
    "HubSource",
    "OpenAITeacher",
    "Recipe",
    "RecipeError",
    "ReplayTeacher",
    "Source",
    "SpaceSpec",
    "Student",
    "TrainSpec",
    "TransformersTeacher",
    "load_recipe",
    "plan_configs",
    "recipe_hash",
    "student_name",
    "teacher_name",
]
