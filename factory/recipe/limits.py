"""Every limit a recipe is held to: far above what a real study uses, low enough that a typo or
a hostile file fails at once with a clear error instead of filling memory or disk."""

from __future__ import annotations

# The file and its YAML (reading.py); "aliases expanded" counts an aliased node at every use.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32  # levels of nesting, aliases expanded; a real recipe uses about 5
MAX_VALUES = 10_000  # keys and values, aliases expanded; a real recipe has a few hundred
MAX_TEXT = 1_000_000  # characters of all keys and strings, aliases and ${VAR}s expanded
MAX_STRING = 50_000  # characters of one string (a description, say), ${VAR}s expanded
MAX_KEY = 200  # characters of one key

# Counts (schema.py).
MAX_PROBLEMS = 1_000_000  # source.limit, eval.limit, dataset.test_size
MAX_GENERATED = 100_000  # problems a gym source generates per split
MAX_SAMPLES = 64  # cot.samples: teacher samples per problem and config
MAX_ATTEMPTS = 256  # cot.max_attempts: samples asked to reach them
MAX_TOKENS = 131_072  # a teacher's max_tokens, eval.max_new_tokens
MAX_CONCURRENCY = 256  # requests in flight to one teacher
MAX_BATCH = 1024  # batch sizes
MAX_RETRIES = 20
MAX_TIMEOUT = 3600.0  # seconds per teacher request
MAX_SEEDS = 32  # train.seeds
MAX_TEACHERS = 16
MAX_STUDENTS = 32
MAX_MIXTURES = 32
SEED_END = 2**32  # seeds are 0 <= seed < 2**32, what numpy accepts
