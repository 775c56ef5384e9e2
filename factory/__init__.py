"""cot-factory: chain-of-thought distillation datasets and students, built from one YAML recipe."""

__version__ = "0.1.0"
