"""The feature cache: backbone features of a backbone that never changes, shared by every run and
sweep that forwards the same clips through it (docs/cache.md, "The feature cache").

What is exact. A backbone forward is a function of (backbone state, mode, the batch's input, the
kernels that run it). When a run's backbone never changes (`fixed_backbone`), the input of a
forward is fully named by the stream's content and the stream indices of the batch, so features
are cached per *chunk* (the tuple of indices forwarded together), never per sample: a train-mode
forward normalises with the chunk's own batch statistics, and even an eval-mode forward is only
guaranteed bit-identical when the same chunk goes through the same kernels. A chunk forwarded
in another grouping (another batch size, past evaluation's windows) is another chunk.

Key (`FeatureKey.digest`, SHA-256): the backbone's architecture and full state (parameters and
batch-norm buffers, `transfer.backbone_hash`; the initial weights' identity, exact to the bit), the
stream's content (the decode cache's key: manifest SHA, video sizes, transform, decoder; plus the
pixel path and normalisation), the mode (train/eval), the precision, the device kind (CPU
capability or GPU name), the torch version and the format. Entries: `<cache_dir>/features/<k[:2]>/
<k>.pt` (chunks and their features) and `<k>.json` (what the key hashes, the .pt's SHA-256, size),
written atomically (.pt first; an entry counts once its .json exists and the .pt's hash matches,
so a corrupt or partial entry is ignored and recomputed). A run that finds no entry computes
every chunk it needs, so results never depend on the cache being there (tests/test_feature_cache.py).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from actlab import device as compute
from actlab.atomic import atomic_write_bytes, atomic_write_json, read_json
from actlab.errors import DataError
from actlab.families.continual.data.clip_store import CachedClips, entry_key, human
from actlab.families.continual.data.video import ClipDataset
from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.transfer import backbone_hash

log = logging.getLogger(__name__)
FORMAT = 1
MODES = ("train", "eval")
Chunk = tuple[int, ...]


def stream_content_key(dataset: Dataset, stream_sha256: str) -> str | None:
    """SHA-256 naming every input tensor `dataset` yields, or None for a dataset it cannot name.
    A decoding stream and its decode-cache entry give the same tensors, so the same key."""
    while isinstance(dataset, (InMemoryClips, LabelsOnly)):
        dataset = dataset.dataset
    if isinstance(dataset, ClipDataset):
        clips, pixels, mean, std = entry_key(dataset, stream_sha256).digest, dataset.pixels, dataset.mean, dataset.std
    elif isinstance(dataset, CachedClips):
        clips, pixels, mean, std = read_json(dataset.entry.meta)["digest"], "uint8", dataset.mean, dataset.std
    else:
        return None
    doc = {"stream": stream_sha256, "clips": clips, "pixels": pixels, "mean": mean, "std": std}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def backbone_key(model: nn.Module, state: str | None = None) -> str:
    """Architecture + full state (parameters and batch-norm buffers) of `model.backbone`.

    Whether batch norm tracks running statistics (`backbone_bn`) is left out: it decides only the
    buffers after a train-mode forward, never the forward's output, so the frozen reference and a
    head-only run with frozen statistics share entries while their backbones are bit-identical.
    `state`: `backbone_hash(model)` when the caller has it (hashing a SlowFast backbone reads ~240 MB)."""
    from actlab.families.continual.engine.batched_eval import architecture_key
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [m.track_running_stats for m in norms]
    try:
        for m in norms:
            m.track_running_stats = True
        arch = hashlib.sha256(architecture_key(model.backbone).encode()).hexdigest()
    finally:
        for m, t in zip(norms, tracking):
            m.track_running_stats = t
    return hashlib.sha256(f"{arch}:{state or backbone_hash(model)}".encode()).hexdigest()


def kernels(device: torch.device) -> str:
    """The kernels' identity: the same chunk gives the same bits only on the same kind of device."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}:{torch.version.cuda}:{torch.backends.cudnn.version()}"
    return f"{device.type}:{torch.backends.cpu.get_cpu_capability()}"


@dataclass(frozen=True)
class FeatureKey:
    backbone: str
    stream: str
    mode: str
    precision: str
    kernels: str
    torch: str = torch.__version__
    format: int = FORMAT

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class FeatureEntry:
    """One (backbone, stream, mode, kernels) entry: chunk -> features [len(chunk), D] on the CPU."""
    key: FeatureKey
    cache_dir: Path | None
    chunks: dict[Chunk, Tensor] = field(default_factory=dict)
    new: int = 0           # chunks computed since the entry was read

    @property
    def paths(self) -> tuple[Path, Path]:
        base = Path(self.cache_dir) / "features" / self.key.digest[:2] / self.key.digest
        return base.with_suffix(".pt"), base.with_suffix(".json")

    def read(self) -> dict[Chunk, Tensor]:
        """The stored chunks; {} when absent, partial or corrupt (then it is recomputed)."""
        if self.cache_dir is None:
            return {}
        data, meta = self.paths
        if not (meta.is_file() and data.is_file()):
            return {}
        try:
            info = read_json(meta)
            raw = data.read_bytes()
            if hashlib.sha256(raw).hexdigest() != info["sha256"] or info["key"] != asdict(self.key):
                raise DataError("content does not match its .json")
            stored = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            return {tuple(int(i) for i in c): f for c, f in zip(stored["chunks"], stored["features"])}
        except Exception as err:   # any unreadable entry only costs its recomputation
            log.warning("feature cache: ignoring %s (%s)", data, err)
            return {}

    def load(self) -> "FeatureEntry":
        self.chunks = self.read() | self.chunks
        return self

    def write(self) -> bool:
        """Write the chunks (merged with what another job may have written meanwhile: a chunk's
        features are the same bytes whoever computed them); prints the size first."""
        if self.cache_dir is None or not self.new:
            return False
        self.chunks = self.read() | self.chunks
        order = sorted(self.chunks)
        buf = io.BytesIO()
        torch.save({"chunks": [list(c) for c in order], "features": [self.chunks[c] for c in order]}, buf)
        raw = buf.getvalue()
        data, meta = self.paths
        print(f"feature cache: {len(order)} chunks, {sum(len(c) for c in order)} rows, {human(len(raw))} "
              f"({self.key.mode}) -> {data}", flush=True)
        data.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(data.parent).free
        if free < 2 * len(raw):
            raise DataError(f"feature cache: {human(len(raw))} needed but {data.parent} has {human(free)} free "
                            f"(data.cache_dir)")
        atomic_write_bytes(data, raw)
        atomic_write_json(meta, {"key": asdict(self.key), "digest": self.key.digest,
                                 "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "chunks": len(order)})
        self.new = 0
        return True


class LabelsOnly(Dataset):
    """A stream's samples without their video: what a run whose backbone forwards all come from
    the feature cache (or that never forwards the network) iterates, so nothing is decoded."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.labels = dataset.stream_labels()

    def __len__(self) -> int:
        return len(self.labels)

    def stream_labels(self) -> list[tuple[int, int]]:
        return list(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        verb, noun = self.labels[int(i)]
        return {"verb": verb, "noun": noun, "index": int(i)}


class BackboneFeatures:
    """`features(chunk, train)`: the backbone's features of the stream samples `chunk`, forwarded
    together in train or eval mode, from the cache when there, else computed (and kept). Valid only
    while the backbone stays as it was when this was built (`backbone`: its key)."""

    def __init__(self, model: nn.Module, dataset: Dataset, stream_sha256: str, cache_dir: str | Path | None,
                 device: torch.device, precision: str = "fp32") -> None:
        self.model, self.dataset, self.device, self.precision = model, dataset, device, precision
        self.state = backbone_hash(model)
        self.backbone = backbone_key(model, self.state)
        stream = stream_content_key(dataset, stream_sha256)
        # an unnamed dataset still shares features within the job, never on disk
        disk = Path(cache_dir) if cache_dir and stream is not None else None
        self.entries = {m: FeatureEntry(FeatureKey(self.backbone, stream or "", m, precision, kernels(device)), disk)
                        for m in MODES}
        self._loaded: set[str] = set()    # entries are read on first use: a run that turns out not
        self.computed = self.hits = 0     # to be fixed never reads them. Chunks forwarded / served.

    def __call__(self, chunk: Iterable[int], train: bool) -> Tensor:
        chunk = tuple(int(i) for i in chunk)
        mode = "train" if train else "eval"
        entry = self.entries[mode]
        if mode not in self._loaded:
            entry.load()
            self._loaded.add(mode)
        if chunk in entry.chunks:
            self.hits += 1
        else:
            entry.chunks[chunk] = self.compute(chunk, train)
            entry.new += 1
            self.computed += 1
        return entry.chunks[chunk].to(self.device, non_blocking=self.device.type == "cuda")

    def compute(self, chunk: Chunk, train: bool) -> Tensor:
        backbone = self.model.backbone
        if train and any(m.track_running_stats for m in backbone.modules()
                         if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            raise RuntimeError("feature cache: a train-mode forward would move this backbone's batch-norm "
                               "statistics (backbone_bn: adapt); its features are not fixed")
        video = default_collate([self.dataset[i]["video"] for i in chunk])
        was = backbone.training
        backbone.train(train)
        try:
            with torch.no_grad(), compute.autocast(self.device, self.precision):
                return self.model.features(compute.to_device(video, self.device)).cpu()
        finally:
            backbone.train(was)

    def stream(self, batch_size: int) -> Tensor:
        """Eval-mode features of the whole stream, forwarded in consecutive chunks of `batch_size`
        (the hindsight and transfer layout)."""
        n = len(self.dataset)
        return torch.cat([self(range(i, min(i + batch_size, n)), False) for i in range(0, n, batch_size)])

    def still_valid(self) -> bool:
        return backbone_hash(self.model) == self.state

    def save(self) -> list[Path]:
        """Write the entries that gained chunks; only while the backbone is the one they are keyed on."""
        if not self.still_valid():
            raise RuntimeError("feature cache: the backbone changed since its features were keyed; not saved")
        return [e.paths[0] for e in self.entries.values() if e.write()]


def fixed_backbone(model: nn.Module, method: Any, has_optimizer: bool, online_forward: str) -> bool:
    """True when no forward of the run can change the backbone and every forward sees only its own
    batch (call after `method.prepare`): no backbone parameter trains, and its batch-norm
    statistics either do not track (`backbone_bn: frozen`) or no train-mode forward ever runs (a
    method without an optimizer whose online forward is eval-mode or never touches the network).
    Methods whose updates forward other samples with the batch (replay) are excluded."""
    if not getattr(method, "batch_only_forwards", False):
        return False
    if any(p.requires_grad for p in model.backbone.parameters()):
        return False
    if getattr(method, "backbone_bn", "adapt") == "frozen":
        return True
    return not has_optimizer and (online_forward == "eval" or not method.uses_video)


def stream_eval_features(features: BackboneFeatures | None, model: nn.Module, batch_size: int) -> Tensor | None:
    """The eval-mode stream features for a hindsight evaluation, when `features` still holds the
    model's backbone; None otherwise (then the evaluator forwards as usual)."""
    if features is None or not features.still_valid():
        return None
    return features.stream(batch_size)
