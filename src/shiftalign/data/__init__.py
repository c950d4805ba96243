"""Data: row schemas and validation, loading, chat templating, tokenisation, batching."""
