"""What a sweep folder must not hold: the values of secret-looking environment variables, and only
those (a scrubbed ordinary value corrupts the manifest)."""
from __future__ import annotations

import json

from actlab.launch.manifest import scrub, secret_values


def test_secret_values_are_scrubbed_and_lookalike_names_are_not(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "sekret-key-4711")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-abcdef")
    monkeypatch.setenv("DB_PASSWORD", "hunter22")
    # open_clip sets TOKENIZERS_PARALLELISM=false on import: not a secret, and scrubbing its value
    # turned every `false` of a manifest into `***` (invalid JSON)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    values = secret_values()
    assert {"sekret-key-4711", "ghp-abcdef", "hunter22"} <= set(values) and "false" not in values
    text = scrub(json.dumps({"dirty": False, "key": "sekret-key-4711", "url": "https://x/ghp-abcdef"}))
    assert json.loads(text) == {"dirty": False, "key": "***", "url": "https://x/***"}
