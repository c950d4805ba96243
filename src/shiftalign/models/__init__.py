"""Models: loading (HF path or name, the packaged default), LoRA, reward heads, tiny test models."""
