"""HTML report of a pipeline run: what ran, each stage's key numbers, and plots."""
