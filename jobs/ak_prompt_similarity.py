"""Prompt-similarity report of the ak family: how alike CLIP finds its class prompts.

    python jobs/ak_prompt_similarity.py [data=ak clip=vit_b16] [template=with_segment] \
        [+threshold=0.9] [+out=DIR]

The cosine matrix of the L2-normalised class text embeddings (the same prompts and embeddings the
runs use), every pair above the threshold with the action, category, segment and count of both
classes (CSV + LaTeX), and the histogram of the upper triangle (CSV + PNG). Default folder:
${paths.results}/ak_prompt_similarity/<template>.
"""
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from actlab.atomic import atomic_write, atomic_write_text
from actlab.families.ak import data as ak_data
from actlab.families.ak.model import load_clip, prompts, text_embeddings
from actlab.job import file_sha256
from actlab.post.latex import escape


def similar_pairs(sim: np.ndarray, table, threshold: float) -> pd.DataFrame:
    i, j = np.triu_indices(len(sim), k=1)
    keep = sim[i, j] > threshold
    rows = []
    for a, b in zip(i[keep], j[keep]):
        row = {"cosine": float(sim[a, b])}
        for side, c in (("a", a), ("b", b)):
            row |= {f"{side}_index": int(c), f"{side}_action": table.action[c], f"{side}_category": table.category[c],
                    f"{side}_segment": table.segment[c], f"{side}_count": int(table.count[c])}
        rows.append(row)
    return pd.DataFrame(rows, columns=["cosine"] + [f"{s}_{k}" for s in "ab"
                                                    for k in ("index", "action", "category", "segment", "count")])


def latex(pairs: pd.DataFrame, threshold: float, template: str) -> str:
    lines = [r"\begin{table}[t]\centering\small", r"\begin{tabular}{rllrll}", r"\toprule",
             r"cos & action A & segment (count) & & action B & segment (count) \\", r"\midrule"]
    for r in pairs.itertuples(index=False):
        lines.append(f"{r.cosine:.3f} & {escape(r.a_action)} & {r.a_segment} ({r.a_count}) & & "
                     f"{escape(r.b_action)} & {r.b_segment} ({r.b_count}) \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"\\caption{{Class prompt pairs (template {escape(template)}) with text cosine above {threshold}.}}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


@hydra.main(config_path="../configs/ak", config_name="ak", version_base="1.3")
def main(cfg: DictConfig) -> None:
    threshold = float(cfg.get("threshold", 0.9))
    out = Path(cfg.get("out") or Path(cfg.paths.results) / "ak_prompt_similarity" / str(cfg.template))
    data = ak_data.load(cfg.data)
    clip, tokenizer = load_clip(str(cfg.clip.name), str(cfg.clip.weights), cfg.clip.get("config_file"))
    texts = prompts(str(cfg.template), data.table.action, data.table.segment, data.table.description)
    emb = text_embeddings(clip, tokenizer, texts, file_sha256(cfg.clip.weights), cfg.get("text_cache")).numpy()
    sim = emb @ emb.T
    pairs = similar_pairs(sim, data.table, threshold).sort_values("cosine", ascending=False)
    upper = sim[np.triu_indices(len(sim), k=1)]
    counts, edges = np.histogram(upper, bins=40, range=(-1.0, 1.0))
    written = [atomic_write_text(out / "similar_pairs.csv", pairs.to_csv(index=False)),
               atomic_write_text(out / "similar_pairs.tex", latex(pairs, threshold, str(cfg.template))),
               atomic_write_text(out / "histogram.csv", pd.DataFrame({"lower": edges[:-1], "upper": edges[1:],
                                                                      "pairs": counts}).to_csv(index=False))]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(upper, bins=edges)
    ax.axvline(threshold, color="k", linestyle="--")
    ax.set_xlabel("cosine of two class prompts")
    ax.set_ylabel("pairs")
    fig.tight_layout()
    written.append(atomic_write(out / "histogram.png", lambda p: fig.savefig(p, format="png", dpi=120)))
    print(f"{len(pairs)} of {len(upper)} class pairs above {threshold}; mean cosine {upper.mean():.3f}")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
