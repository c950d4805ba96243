"""Recipes: each a ``main(cfg)`` that reads top to bottom, registered by name in :data:`RECIPES`
together with the config class it reads (``recipe:`` in the YAML picks the entry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class Recipe:
    main: Callable
    config: type


RECIPES: Registry[Recipe] = Registry("recipe")


def recipe_name(config_path: str | None, overrides: list[str]) -> str:
    """The ``recipe`` named by the overrides or the YAML file (default: preference)."""
    import yaml

    from ..errors import ConfigError

    for ov in reversed(overrides):
        if ov.startswith("recipe="):
            return ov.split("=", 1)[1].strip()
    if config_path:
        try:
            with open(config_path) as f:
                tree = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            return "preference"  # load_config reports the problem with the file
        if not isinstance(tree, dict):
            raise ConfigError(f"{config_path}: expected a mapping at the top level")
        return str(tree.get("recipe", "preference"))
    return "preference"


from . import preference, reward, rl, sft  # noqa: E402,F401  (registration)


def check_method_sections(cfg) -> None:
    """Validate the free-form method sections (``loss:``, ``algorithm:``) against their method's own
    parameter dataclass, so `shiftalign config` reports a wrong key as `shiftalign train` would."""
    from ..config import from_dict
    from ..losses import LOSSES
    from ..rl import RL_ALGOS

    for section, registry in (("loss", LOSSES), ("algorithm", RL_ALGOS)):
        knobs = getattr(cfg, section, None)
        if isinstance(knobs, dict) and "name" in knobs:
            rest = {k: v for k, v in knobs.items() if k != "name"}
            from_dict(registry.get(knobs["name"]).params, rest, section)
