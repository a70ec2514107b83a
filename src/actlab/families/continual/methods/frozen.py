"""Frozen network: the pretrained model, never updated (the reference for OAG/HAG)."""
from __future__ import annotations

from actlab.families.continual.methods.base import Method


class Frozen(Method):
    name = "frozen"
