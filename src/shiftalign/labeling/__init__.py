"""Pseudo-labelling of policy samples: reward-model labeller, pairwise LLM judge (API or local),
client discipline (limits, retries, cache, budget) and pair building."""
