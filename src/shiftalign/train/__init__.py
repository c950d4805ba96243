"""The one training loop, checkpointing, reference log-prob cache and metric logging."""
