"""A recipe's registry entry (its ``main`` and the config class it reads) and the registry of recipes,
apart from the package so that a recipe file can register itself without importing the package that
imports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class Recipe:
    main: Callable
    config: type


RECIPES: Registry[Recipe] = Registry("recipe")
