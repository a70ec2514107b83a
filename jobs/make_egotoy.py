"""Generate the embedded egotoy data set (Ego4D v1 formats): see actlab.families.continual.data.egotoy."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from actlab.families.continual.data.egotoy import default_workers, generate, plan, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/egotoy"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sample counts")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="render processes (the output does not depend on it)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = generate(args.out, seed=args.seed, scale=args.scale, workers=args.workers)
    elapsed = time.perf_counter() - t0
    per_user = summary(plan(args.seed, args.scale))
    clips = sorted((out / "clips").glob("*.mp4"))
    size_mb = sum(p.stat().st_size for p in clips) / 2**20
    print(json.dumps(per_user, indent=1))
    print(f"wrote {out}/ego4d.json, {out}/taxonomy.json, {out}/annotations/fho_lta_{{train,val}}.json, "
          f"{len(clips)} clips ({size_mb:.1f} MiB) in {out}/clips")
    print(f"users: {len(per_user)}, stream samples: "
          f"{sum(u['samples'] for u in per_user.values())}; elapsed {elapsed:.1f} s "
          f"(seed {args.seed}, scale {args.scale}, {args.workers} workers)")


if __name__ == "__main__":
    main()
