"""The recipe: one YAML file describing a whole study, validated strictly before any work starts.

`schema` declares every section, `plans` the configs a recipe builds, `loading` reads a file
(interpolation, validation, the build's identity) through `reading` (bounded YAML), `names` and
`limits` hold the rules every name and count follows, and `where` locates keys for messages.
This package imports nothing else from cot-factory.
"""

from factory.recipe.loading import load_recipe, recipe_hash
from factory.recipe.names import student_name, teacher_name
from factory.recipe.plans import CONFIG_NAME, ConfigPlan, plan_configs
from factory.recipe.schema import (
    DROP_REASONS,
    AlpacaSource,
    Columns,
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
