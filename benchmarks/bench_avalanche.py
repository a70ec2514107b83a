"""Our stream loop against Avalanche 0.6 (`Naive`, and `Naive` + `ReplayPlugin` = its `Replay`).

Same stream (one train user, decoded once), same model and initial weights, SGD(lr 0.01), batches
of 4 consecutive samples in stream order. Avalanche gets the online protocol its own way: the
stream split into experiences of 4 samples (`split_online_stream(..., shuffle=False)`), one
epoch each, and a plugin that, in `before_training_iteration`, runs the model (train mode,
no_grad, as our `online_forward: train`) on the minibatch before its update: the online
predictions. Its Replay uses `ReplayPlugin(mem_size=64, storage_policy=ReservoirSamplingBuffer(64))`
(the `Replay` strategy's default buffer is experience-balanced, which has no meaning with one
experience per batch); it trains on the new batch concatenated with 4 memory samples in ONE
forward of 8, where ours runs the two batches separately and averages the two mean losses
(equal weights, different batch-norm statistics). Online accuracy counts the new samples only,
for both: Avalanche's replay loader puts the new batch first, so the plugin scores its first
rows (as many as the experience holds) (checked: their labels are the stream's, batch by batch).
Figures: time ratio avalanche / ours, and online action top-1 of both; the accuracy check runs
once more with dropout off, where the two must agree sample by sample up to float noise.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

import _egotoy
from common import Record, interleaved, median

from actlab.families.continual.engine.clip_cache import InMemoryClips
from actlab.families.continual.engine.stream_loop import run_stream
from actlab.families.continual.metrics.online import OnlineMetrics

BATCH, MEMORY, LR = 4, 64, 0.01
AVALANCHE = (Path(__file__).resolve().parents[1] / "requirements-bench.txt").read_text().strip()


def ensure_avalanche() -> None:
    try:
        import avalanche  # noqa: F401
    except ImportError:
        print(f"benchmarks: installing {AVALANCHE} into {sys.prefix} (benchmark-only dependency)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", AVALANCHE], check=True)


class Concat(nn.Module):
    """Avalanche wants one logits tensor: [verb logits | noun logits]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return torch.cat([out["verb"], out["noun"]], 1)


class VerbNounLoss(nn.Module):
    """Target = verb * num_nouns + noun; loss CE(verb) + CE(noun), our protocol's loss."""

    def __init__(self, num_verbs: int, num_nouns: int) -> None:
        super().__init__()
        self.nv, self.nn = num_verbs, num_nouns

    def forward(self, out: Tensor, y: Tensor) -> Tensor:
        return (nn.functional.cross_entropy(out[:, :self.nv], y // self.nn)
                + nn.functional.cross_entropy(out[:, self.nv:], y % self.nn))


def avalanche_run(init: nn.Module, x: Tensor, y: Tensor, nv: int, nn_: int, replay: bool) -> list[bool]:
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.online import split_online_stream
    from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_tensor_classification_dataset
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ReservoirSamplingBuffer
    from avalanche.training.supervised import Naive

    correct: list[bool] = []
    seen: list[list[int]] = []

    class OnlinePredictions(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kw):
            new = strategy.mb_x[:len(strategy.experience.dataset)]   # replay rows follow the new ones
            target = strategy.mb_y[:len(new)]
            with torch.no_grad():
                out = strategy.model(new)
            ok = (out[:, :nv].argmax(1) == target // nn_) & (out[:, nv:].argmax(1) == target % nn_)
            correct.extend(ok.tolist())
            seen.append(sorted(target.tolist()))

    model = Concat(copy.deepcopy(init))
    plugins = [OnlinePredictions()]
    if replay:
        plugins.append(ReplayPlugin(mem_size=MEMORY, storage_policy=ReservoirSamplingBuffer(MEMORY)))
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=LR),
                     criterion=VerbNounLoss(nv, nn_), train_mb_size=BATCH, train_epochs=1,
                     device="cpu", plugins=plugins, evaluator=EvaluationPlugin(loggers=[]))
    data = _make_taskaware_tensor_classification_dataset(x, y, targets=y, task_labels=0)
    stream = split_online_stream(benchmark_from_datasets(train=[data]).train_stream, BATCH, shuffle=False)
    # shuffle=False keeps the stream order; for replay the memory batch must still be random
    strategy.train(stream, eval_streams=[], shuffle=replay)
    expected = [sorted(y[i:i + BATCH].tolist()) for i in range(0, len(y), BATCH)]
    if seen != expected:
        raise RuntimeError("avalanche: the scored rows are not the stream's batches in order")
    return correct


def ours_run(name: str, init: nn.Module, dataset, nv: int, nn_: int, tmp: Path) -> list[bool]:
    from bench_stream_loop import method

    model = copy.deepcopy(init)
    result = run_stream(model, method(name), dataset, metrics=OnlineMetrics(nv, nn_), seed=0,
                        batch_size=BATCH, online_forward="train", checkpoint_dir=Path(tempfile.mkdtemp(dir=tmp)),
                        checkpoint_every=25)
    return [bool(c) for c in result.records["correct_action"]]


def main() -> None:
    warnings.filterwarnings("ignore")   # pytorchvideo/avalanche deprecation noise
    ensure_avalanche()
    import avalanche

    stream = _egotoy.open_stream()
    cfg = _egotoy.data_cfg()
    nv, nn_ = int(cfg.num_verbs), int(cfg.num_nouns)
    dataset = InMemoryClips(stream.dataset)
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([it["video"] for it in items])
    y = torch.tensor([it["verb"] * nn_ + it["noun"] for it in items])
    init = _egotoy.new_model()
    n = len(items)
    acc = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fns = {"ours_finetune": lambda: acc.__setitem__("ours_finetune", ours_run("finetune", init, dataset, nv, nn_, tmp)),
               "avalanche_naive": lambda: acc.__setitem__("avalanche_naive", avalanche_run(init, x, y, nv, nn_, False)),
               "ours_replay": lambda: acc.__setitem__("ours_replay", ours_run("replay", init, dataset, nv, nn_, tmp)),
               "avalanche_replay": lambda: acc.__setitem__("avalanche_replay", avalanche_run(init, x, y, nv, nn_, True))}
        times = interleaved(fns, repeats=3, warmup=1)
        # Agreement without dropout: the only randomness left is float summation order.
        det = copy.deepcopy(init)
        det.dropout.p = 0.0
        ours_det = ours_run("finetune", det, dataset, nv, nn_, tmp)
        ava_det = avalanche_run(det, x, y, nv, nn_, False)
    med = {k: median(v) for k, v in times.items()}
    top1 = {k: sum(v) / len(v) for k, v in acc.items()}
    se = (top1["ours_finetune"] * (1 - top1["ours_finetune"]) / n) ** 0.5
    fig = {
        "avalanche_naive_over_ours_time": med["avalanche_naive"] / med["ours_finetune"],
        "avalanche_replay_over_ours_time": med["avalanche_replay"] / med["ours_replay"],
        "ours_finetune_clips_per_s": n / med["ours_finetune"],
        "avalanche_naive_clips_per_s": n / med["avalanche_naive"],
        "ours_online_action_top1_finetune": top1["ours_finetune"],
        "avalanche_online_action_top1_naive": top1["avalanche_naive"],
        "finetune_top1_difference": top1["avalanche_naive"] - top1["ours_finetune"],
        "binomial_se_of_top1": se,
        "ours_online_action_top1_replay": top1["ours_replay"],
        "avalanche_online_action_top1_replay": top1["avalanche_replay"],
        "no_dropout_same_prediction_fraction": sum(a == b for a, b in zip(ours_det, ava_det)) / n,
        "no_dropout_top1_ours": sum(ours_det) / n,
        "no_dropout_top1_avalanche": sum(ava_det) / n,
    }
    notes = [f"avalanche {avalanche.__version__}; user {stream.user}, {n} clips, batch {BATCH}, SGD lr {LR}, "
             "seeded random initial weights (same for all)",
             "Avalanche: experiences of 4 (split_online_stream, no shuffle), 1 epoch each; online predictions "
             "from a before_training_iteration plugin (train mode, no_grad), new samples only",
             f"replay: ReplayPlugin(mem {MEMORY}, ReservoirSamplingBuffer) = one forward of new+memory (8); "
             "ours: two forwards of 4, (mean new + mean memory) / 2",
             "with dropout (0.5) the runs draw different masks: top-1 agrees within noise if |difference| <~ 2 se"]
    Record("avalanche", figures=fig, raw={"median_s": med, "times_s": times, "n_clips": n}, notes=notes).write()


if __name__ == "__main__":
    main()
