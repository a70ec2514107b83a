"""Generate the embedded Animal Kingdom stand-in (actlab.families.ak.aktoy) unless it is complete.

    python jobs/make_aktoy.py [--out data/aktoy] [--seed 0] [--scale 1] [--force]

The `aktoy_*` experiments run this as their preparation step (before the arrays).
"""
import argparse
import sys
import time

from actlab.families.ak.aktoy import generate, is_complete


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/aktoy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--force", action="store_true", help="regenerate even when complete")
    # The pipeline appends the sweep's `paths.*=...` overrides to every step; --out already has them.
    args, rest = p.parse_known_args(argv)
    unknown = [a for a in rest if not a.startswith("paths.")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    if is_complete(args.out, args.seed, args.scale) and not args.force:
        print(f"{args.out}: aktoy is complete (seed {args.seed}, scale {args.scale}), not regenerating")
        return 0
    t0 = time.monotonic()
    generate(args.out, seed=args.seed, scale=args.scale)
    print(f"{args.out}: aktoy written in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
