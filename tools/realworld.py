"""The real-world digit set: build it, evaluate a checkpoint on it, or build training font digits.

    python -m tools.realworld build [--out realworld/]    # the images and realworld/manifest.csv
    python -m tools.realworld eval [--checkpoint PATH]    # logs/realworld-<date>.json, .md and .png
    python -m tools.realworld readme logs/realworld-<date>.json   # README's block from that record
    python -m tools.realworld font-digits [--data-dir data]   # digits of OTHER fonts, for training
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s5 import realworld
from s5.checkpoint import CheckpointError
from s5.cli import bounded, fail, program

PROG = program("tools.realworld")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the image files and manifest.csv")
    b.add_argument("--out", type=Path, default=Path("realworld"))
    b.add_argument("--per-font", type=bounded(int, 1, 100), default=2,
                   help="pictures per font, digit and category (default 2)")
    b.add_argument("--sklearn", type=bounded(int, 0, 1797), default=1797,
                   help="how many of scikit-learn's scans (default all 1797)")
    b.add_argument("--seed", type=bounded(int, 0, 2**63 - 1), default=0)
    b.add_argument("--limit", type=bounded(int, 1, 10**6),
                   help="at most this many images per source (for a quick try)")
    e = sub.add_parser("eval", help="accuracy of predict.py's path per source and category")
    e.add_argument("--out", type=Path, default=Path("realworld"))
    e.add_argument("--checkpoint", type=Path)
    e.add_argument("--log-dir", type=Path, default=Path("logs"))
    e.add_argument("--readme", type=Path, help="also write the summary into this README's block")
    r = sub.add_parser("readme", help="rewrite a README's realworld block from an evaluation")
    r.add_argument("record", type=Path, help="an evaluation's logs/realworld-<date>.json")
    r.add_argument("--readme", type=Path, default=Path("README.md"))
    t = sub.add_parser("font-digits", help="training digits from other handwriting fonts "
                       "(train.py --font-digits)")
    t.add_argument("--data-dir", type=Path, default=Path("data"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "font-digits":
            folder = realworld.build_font_digits(args.data_dir)
            print(f"wrote {len(realworld.TRAINING_FONTS)} faces' digits to {folder}")
        elif args.command == "build":
            count = realworld.build(args.out, args.per_font, args.sklearn, args.seed, args.limit)
            print(f"wrote {count} images and {args.out / 'manifest.csv'}")
        elif args.command == "readme":
            try:
                realworld.write_readme_block(args.readme, args.record)
            except KeyError as exc:
                raise ValueError(f"{args.record} is not an evaluation's record (no {exc})") \
                    from None
            print(f"{args.readme}: realworld block regenerated from {args.record}")
        elif not (args.out / "manifest.csv").is_file():
            return fail(PROG, f"no {args.out / 'manifest.csv'}; run `python -m tools.realworld "
                              "build` first", 2)
        else:
            try:
                record = realworld.evaluate(args.out, args.checkpoint, args.log_dir, args.readme)
            except KeyError as exc:
                raise ValueError(f"{args.out / 'manifest.csv'} lacks the column {exc}") from None
            print(record.with_suffix(".md").read_text())
            print(f"wrote {record}, {record.with_suffix('.md')} and {record.with_suffix('.png')}")
    except (realworld.FontsMissingError, CheckpointError, ValueError, OSError) as exc:
        # a bad checkpoint, manifest or record, missing fonts: one line, no traceback
        return fail(PROG, exc, getattr(exc, "exit_status", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
