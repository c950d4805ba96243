"""Recipes: each a ``main(cfg)`` that reads top to bottom. Registered by name in :data:`RECIPES`."""

from __future__ import annotations

from ..registry import Registry

RECIPES: Registry = Registry("recipe")

from . import preference, reward, sft  # noqa: E402,F401  (registration)
