"""Temporary compatibility name (moved to `factory.run`)."""

from factory.run import reproduce  # noqa: F401
