"""SlowFast-library parameter names -> the names of `factory.slowfast_r101` (pytorchvideo).

Ego4D's released recognition checkpoints and upstream's own (its `MultiTaskSlowFast`) name tensors
the SlowFast-library way: `s<stage>.pathway<p>_res<i>.branch2.a_bn.weight`, `s<stage>_fuse.conv_f2s`,
`head.projections.<n>`. pytorchvideo's `create_slowfast` holds the same tensors, with the same
shapes, under `blocks.<stage-1>.multipathway_blocks.<p>.res_blocks.<i>.branch2.norm_a.weight`, etc.
The translation is one table of layer patterns (below) plus the parameter suffix, so every rule can
be read against both definitions; tests/data/slowfast_r101_8x8_keys.json (upstream's full key list)
pins it. See docs/protocol.md ("Pretrained weights").
"""
from __future__ import annotations

import re

_BACKBONE = "backbone.net.blocks."   # where VideoClassifier/SlowFastBackbone keep create_slowfast's blocks
_PARAM = r"\.(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"
_RES = r"s(?P<stage>[2-5])\.pathway(?P<p>\d)_res(?P<i>\d+)\."
_RES_OUT = "{block}.multipathway_blocks.{p}.res_blocks.{i}."

# (SlowFast-library layer, pytorchvideo layer). Stage s<k> is pytorchvideo's blocks.<k-1>: the stem
# is block 0, res stages s2..s5 are blocks 1..4, and the fusion after stage k (s<k>_fuse) is that
# block's `multipathway_fusion`. Upstream's head: projection 0 = verbs, 1 = nouns (its
# MODEL.NUM_CLASSES = [115, 478]); `head.0.` is the head once upstream wrapped it with its
# unseen-class masker (checkpoints saved after a user stream).
_LAYERS: tuple[tuple[str, str], ...] = (
    (r"s(?P<stage>1)\.pathway(?P<p>\d)_stem\.conv", "{block}.multipathway_blocks.{p}.conv"),
    (r"s(?P<stage>1)\.pathway(?P<p>\d)_stem\.bn", "{block}.multipathway_blocks.{p}.norm"),
    (r"s(?P<stage>[1-4])_fuse\.conv_f2s", "{block}.multipathway_fusion.conv_fast_to_slow"),
    (r"s(?P<stage>[1-4])_fuse\.bn", "{block}.multipathway_fusion.norm"),
    (_RES + r"branch1", _RES_OUT + "branch1_conv"),
    (_RES + r"branch1_bn", _RES_OUT + "branch1_norm"),
    (_RES + r"branch2\.(?P<x>[abc])", _RES_OUT + "branch2.conv_{x}"),
    (_RES + r"branch2\.(?P<x>[abc])_bn", _RES_OUT + "branch2.norm_{x}"),
    (r"head\.(?:0\.)?projections\.0", "verb_head"),
    (r"head\.(?:0\.)?projections\.1", "noun_head"),
)
_RULES = tuple((re.compile(pattern + _PARAM), target) for pattern, target in _LAYERS)


def to_actlab(key: str) -> str | None:
    """The `slowfast_r101` key of a SlowFast-library key; None when `key` is not one."""
    for pattern, target in _RULES:
        m = pattern.fullmatch(key)
        if m is None:
            continue
        fields = m.groupdict()
        if "stage" not in fields:                  # a head
            return f"{target}.{fields['param']}"
        name = target.format(**fields, block=int(fields["stage"]) - 1)
        return f"{_BACKBONE}{name}.{fields['param']}"
    return None


def translate(state: dict[str, object]) -> dict[str, object]:
    """A state_dict with every SlowFast-library key renamed; other keys are kept as they are."""
    out: dict[str, object] = {}
    for key, value in state.items():
        new = to_actlab(key) or key
        if new in out:
            raise ValueError(f"two checkpoint keys map onto {new} (one of them is {key})")
        out[new] = value
    return out
