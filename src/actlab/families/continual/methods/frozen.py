"""Frozen network: the pretrained model, never updated (the reference for OAG/HAG).

Its parameters never change. As upstream's fixed network, its train-mode online forward still
moves the batch-norm running statistics (`backbone_bn: adapt`); `frozen` keeps it bit-identical.
"""
from __future__ import annotations

from actlab.families.continual.methods.base import Method


class Frozen(Method):
    name = "frozen"
