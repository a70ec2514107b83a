"""The one place that makes pytorchvideo 0.1.5 (2022) import on torchvision >= 0.17.

torchvision renamed `transforms.functional_tensor` to `transforms._functional_tensor`;
pytorchvideo.transforms still imports the old name. Aliasing the module before the first
pytorchvideo import is enough. Import pytorchvideo only through this module.
"""
from __future__ import annotations

import importlib
import sys


def _alias_functional_tensor() -> None:
    old = "torchvision.transforms.functional_tensor"
    if old not in sys.modules:
        sys.modules[old] = importlib.import_module("torchvision.transforms._functional_tensor")


_alias_functional_tensor()

import pytorchvideo  # noqa: E402,F401  (re-exported for callers)
import pytorchvideo.data.encoded_video  # noqa: E402,F401
import pytorchvideo.models  # noqa: E402,F401
import pytorchvideo.transforms  # noqa: E402,F401
