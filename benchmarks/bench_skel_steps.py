"""The skel family's training costs: batched ITM negative sampling against a per-row loop at
B = 128 (target >= 5x), and the step time of ITC+momentum and ITC+ITM relative to plain ITC on
the toy model (report)."""
from __future__ import annotations

import torch
from common import Record, interleaved, median

from actlab.families.skel.losses import itm_negative_probs, sample_negatives


def per_row_negatives(sim: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The baseline: one masked softmax and one multinomial per row."""
    out = []
    for i in range(len(labels)):
        other = labels != labels[i]
        p = torch.softmax(sim[i].masked_fill(~other, float("-inf")), 0)
        out.append(torch.multinomial(p, 1, generator=g))
    return torch.cat(out)


def main() -> None:
    torch.set_num_threads(1)
    b = 128
    sim = torch.randn(b, b)
    labels = torch.randint(0, 60, (b,))
    g = torch.Generator().manual_seed(0)
    times = interleaved({"batched": lambda: sample_negatives(itm_negative_probs(sim, labels), g),
                         "loop": lambda: per_row_negatives(sim, labels, g)}, repeats=20)
    fig = {"itm_sampling_speedup_batched_over_loop_b128": median(times["loop"]) / median(times["batched"])}
    raw = {"itm_sampling_s": {k: median(v) for k, v in times.items()}}
    steps = _step_times()
    fig |= {"step_time_itc_mom_over_itc": steps["itc_mom"] / steps["itc"],
            "step_time_itc_itm_over_itc": steps["itc_itm"] / steps["itc"]}
    raw["toy_step_s"] = steps
    Record("skel_steps", fig, raw, notes=["target: itm_sampling_speedup_batched_over_loop_b128 >= 5"]).write()


def _step_times() -> dict[str, float]:
    from actlab.families.skel.model import ModelConfig, SkelTextModel
    from actlab.families.skel.text import TextTower
    from actlab.families.skel.train import step_loss

    batch = {"heatmap": torch.rand(8, 17, 16, 32, 32), "label": torch.arange(8) % 5}
    fns = {}
    for loss in ("itc", "itc_mom", "itc_itm"):
        torch.manual_seed(0)
        model = SkelTextModel(ModelConfig(loss=loss, base=8, blocks=(1, 1, 1), hidden=64, embed=32, queue_size=64,
                                          fusion_layers=1),
                              TextTower(width=32, layers=2, heads=2, context_length=16, embed_dim=32),
                              [str(i) for i in range(10)])
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        g = torch.Generator().manual_seed(0)

        def step(model=model, opt=opt, g=g):
            opt.zero_grad()
            loss_value, _ = step_loss(model, batch, g, 10, 0.4)
            loss_value.backward()
            opt.step()
        fns[loss] = step
    return {k: median(v) for k, v in interleaved(fns, repeats=5).items()}


if __name__ == "__main__":
    main()
