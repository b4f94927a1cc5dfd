"""Command-line interface of bayestensor.

Commands
--------
``bayestensor demo [--out DIR] [--tiny]``
    Fit FunBaT-Tucker to the bundled ozone data, print held-out metrics, write plots.
``bayestensor fit data.csv --coords lat lon month --value ozone --rank 3 --out model.bt``
    Fit a model to a long-format CSV file and save it.
``bayestensor predict model.bt new.csv [--level 0.95] > pred.csv``
    Predictive mean, sd and intervals at the rows of a CSV file, as CSV on stdout.
``bayestensor datasets``
    List the bundled data sets.

Every error (a missing file, an unknown column, a bad rank, a file that is not a saved model)
prints one line ``bayestensor <command>: error: <what>`` on stderr and exits with status 1
(status 2 for a malformed command line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KINDS = ("continuous", "categorical")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandError(ValueError):
    """A bad argument detected by the CLI itself (printed as one line)."""


def _read_csv(path: str, what: str):
    """Read a CSV file; a missing or unreadable file is a :class:`CommandError`."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"{what} {path!r} does not exist (or is not a file)")
    try:
        return pd.read_csv(p)
    except (ValueError, UnicodeDecodeError) as err:  # pandas parser errors are ValueErrors
        raise CommandError(f"cannot read {what} {path!r} as CSV: {err}") from None


def _parse_coords(items: list[str]) -> dict[str, str | None]:
    """``["lat", "origin:categorical"]`` -> ``{"lat": None, "origin": "categorical"}``."""
    coords: dict[str, str | None] = {}
    for item in items:
        name, sep, kind = item.rpartition(":") if ":" in item else (item, "", "")
        if sep and kind not in KINDS:
            raise CommandError(f"--coords {item!r}: the kind after ':' must be one of {KINDS}")
        if name in coords:
            raise CommandError(f"--coords names {name!r} twice")
        coords[name] = kind or None
    return coords


def _cmd_demo(args) -> int:
    from bayestensor.demo import run

    run(args.out, tiny=args.tiny, rank=args.rank, max_sweeps=args.max_sweeps)
    return 0


def _cmd_fit(args) -> int:
    import bayestensor as bt
    from bayestensor.data import parse_coords

    df = _read_csv(args.data, "data file")
    parsed = _parse_coords(args.coords)
    missing = [c for c in [*parsed, args.value] if c not in df.columns]
    if missing:
        raise CommandError(
            f"column(s) {missing} not in {args.data!r}; its columns are {list(df.columns)}"
        )
    # default kinds from the column types, then the kinds given on the command line
    coords = parse_coords(df, list(parsed), args.value)
    coords |= {name: kind for name, kind in parsed.items() if kind is not None}
    rank = args.rank[0] if len(args.rank) == 1 else tuple(args.rank)
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {args.out!r} is a folder; give a file name (e.g. model.bt)")
    if not out.parent.is_dir():
        raise CommandError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist")
    result = bt.fit(
        df,
        coords=coords,
        value=args.value,
        model=args.model,
        rank=rank,
        kernel=args.kernel,
        max_sweeps=args.max_sweeps,
        seed=args.seed,
        progress=not args.quiet,
    )
    result.save(out)
    if not args.quiet:
        print(result)
        print(f"model saved to {out}")
    return 0


def _cmd_predict(args) -> int:
    import bayestensor as bt

    result = bt.load(args.model)
    df = _read_csv(args.data, "data file")
    names = list(result.coords)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise CommandError(
            f"column(s) {missing} of the model not in {args.data!r}; "
            f"its columns are {list(df.columns)}"
        )
    # a PDE solution gives the GP mean only (no intervals yet)
    pred = result.predict(df) if result.kind == "pde" else result.predict(df, level=args.level)
    table = df[names].join(pred[[c for c in ("mean", "sd", "lower", "upper") if c in pred]])
    if args.out is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(args.out, index=False)
    return 0


def _cmd_datasets(args) -> int:
    from bayestensor import datasets

    for name in datasets.list():
        meta = datasets.info(name)
        shape = " x ".join(str(s) for s in meta.shape)
        modes = ", ".join(f"{c} ({k})" for c, k in meta.coords.items())
        print(f"{name:<9}{meta.rows:>7} rows  tensor {shape}  value {meta.value!r}")
        print(f"{'':<9}modes: {modes}")
        print(f"{'':<9}{meta.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayestensor`` command (one sub-parser per command)."""
    parser = _Parser(
        prog="bayestensor",
        description="Bayesian tensor models on continuous and categorical coordinates.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="fit the bundled ozone data with FunBaT, write plots")
    demo.add_argument("--out", default="bayestensor-demo", help="folder for the figures")
    demo.add_argument("--tiny", action="store_true", help="a quick run on a subset")
    demo.add_argument("--rank", type=int, default=3, help="Tucker rank of every mode")
    demo.add_argument("--max-sweeps", type=int, default=None, help="cap on the sweeps")
    demo.set_defaults(handler=_cmd_demo)

    fit = sub.add_parser("fit", help="fit a model to a long-format CSV file and save it")
    fit.add_argument("data", help="CSV file, one row per observed cell")
    fit.add_argument(
        "--coords",
        nargs="+",
        required=True,
        metavar="COLUMN[:KIND]",
        help="coordinate columns, optionally with ':continuous' or ':categorical'",
    )
    fit.add_argument("--value", required=True, help="the numeric column to model")
    fit.add_argument(
        "--rank", type=int, nargs="+", default=[3], help="one rank, or one per coordinate"
    )
    fit.add_argument("--model", default="tucker", choices=["tucker", "cp"])
    fit.add_argument("--kernel", default="matern32", choices=["matern12", "matern32", "matern52"])
    fit.add_argument("--max-sweeps", type=int, default=100, help="cap on the sweeps")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", required=True, help="file for the fitted model (e.g. model.bt)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    fit.set_defaults(handler=_cmd_fit)

    predict = sub.add_parser("predict", help="predict at the rows of a CSV file (CSV on stdout)")
    predict.add_argument("model", help="a model saved by 'bayestensor fit'")
    predict.add_argument("data", help="CSV file with the model's coordinate columns")
    predict.add_argument("--level", type=float, default=0.95, help="interval probability")
    predict.add_argument("--out", default=None, help="write here instead of stdout")
    predict.set_defaults(handler=_cmd_predict)

    listing = sub.add_parser("datasets", help="list the bundled data sets")
    listing.set_defaults(handler=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayestensor`` console script; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 for bad input (one line on stderr). A malformed command line exits
        with status 2 through :class:`SystemExit`.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"bayestensor {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
