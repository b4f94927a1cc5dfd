"""Command-line interface: ``bayestensor demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayestensor`` console script; returns the exit code."""
    parser = argparse.ArgumentParser(prog="bayestensor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a bundled real data set and write plots")
    demo.add_argument("--out", default="bayestensor-demo", help="folder for the figures")
    demo.add_argument("--tiny", action="store_true", help="a quick, smaller run")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from bayestensor.demo import run

        try:
            run(args.out, tiny=args.tiny)
        except (ValueError, OSError) as err:
            print(f"bayestensor demo: error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
