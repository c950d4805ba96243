"""Rollouts: batched sampling of responses from a policy (the target domain)."""
