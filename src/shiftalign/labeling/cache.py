"""Persistent SQLite cache of judge responses, so a killed job resumes without paying twice.

The key is a hash of everything that determines a response: backend kind, endpoint (base URL),
model (and a fingerprint of a local model's files), whether log-probs were asked for, template hash,
prompt, both responses in the order asked, whether it is a re-ask, and the sampling parameters.
Only responses that came back from the model are stored (never errors, never credentials).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A killed process loses nothing committed; only a power cut may lose the last few answers,
        # which are then asked again. Saves an fsync per answer.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: dict) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        self.db.close()
