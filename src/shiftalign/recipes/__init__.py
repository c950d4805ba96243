"""Recipes: each a ``main(cfg)`` that reads top to bottom, registered by name in :data:`RECIPES`
together with the config class it reads (``recipe:`` in the YAML picks the entry)."""

from __future__ import annotations

from .spec import RECIPES, Recipe  # noqa: F401  (the package's names)


def recipe_name(config_path: str | None, overrides: list[str]) -> str:
    """The ``recipe`` named by the overrides or the YAML file, or a file it extends (default: preference)."""
    from ..config import read_tree

    for ov in reversed(overrides):
        if ov.startswith("recipe="):
            return ov.split("=", 1)[1].strip()
    if config_path:
        return str(read_tree(config_path).get("recipe", "preference"))
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
