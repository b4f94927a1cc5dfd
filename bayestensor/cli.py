"""Command-line interface of bayestensor.

Commands
--------
``bayestensor demo [--out DIR] [--tiny]``
    Fit FunBaT-Tucker to the bundled ozone data, print held-out metrics, write plots.
``bayestensor fit data.csv --coords lat lon month --value ozone --rank 3 --out model.bt``
    Fit a model to a long-format CSV file and save it (``--model tucker | cp |
    poisson-tucker``; ``--coords when:time`` reads a column of dates and times).
``bayestensor predict model.bt new.csv [--level 0.95] > pred.csv``
    Predictive mean, sd and intervals at the rows of a CSV file, as CSV on stdout.
``bayestensor datasets [list]``
    List the bundled data sets.
``bayestensor datasets export NAME FILE``
    Write a bundled data set as CSV (``-``: stdout).

CSV output holds every float at full precision (the shortest text that reads back as the same
float64). Every error (a missing file, an unknown column, a bad rank, a file that is not a
saved model) prints one line ``bayestensor <command>: error: <what>`` on stderr and exits with
status 1 (status 2 for a malformed command line). Output into a closed pipe (``… | head``)
stops quietly with status 141, as ``SIGPIPE`` would.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

KINDS = ("continuous", "categorical", "time")
#: Exit status after a closed output pipe (128 + SIGPIPE, what the shell reports for it).
BROKEN_PIPE_STATUS = 141


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class CommandError(ValueError):
    """A bad argument detected by the CLI itself (printed as one line)."""


def read_csv_exact(source, **kwargs):
    """``pandas.read_csv`` that reads every float as the float64 its text denotes.

    pandas 3 does so by default; pandas 2's default parser can be one unit in the last place
    off, so there the round-trip parser is asked for.
    """
    import pandas as pd

    if int(pd.__version__.split(".")[0]) < 3:
        kwargs.setdefault("float_precision", "round_trip")
    return pd.read_csv(source, **kwargs)


def _read_csv(path: str, what: str):
    """Read a CSV file; a missing or unreadable file is a :class:`CommandError`."""

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"{what} {path!r} does not exist (or is not a file)")
    try:
        return read_csv_exact(p)
    except (ValueError, UnicodeDecodeError) as err:  # pandas parser errors are ValueErrors
        raise CommandError(f"cannot read {what} {path!r} as CSV: {err}") from None


def _write_csv(table, target: str | None) -> None:
    """A table as CSV on stdout (``target`` None or ``"-"``) or in a file, no index column.

    pandas writes each float as the shortest text that reads back as the same float64, so
    nothing is rounded away (what a fixed ``float_format`` such as ``"%.7g"`` would do).
    """
    if target is None or target == "-":
        table.to_csv(sys.stdout, index=False)
        sys.stdout.flush()  # a closed pipe is reported here, inside main's handler
    else:
        table.to_csv(target, index=False)


def _times(series, name: str, time):
    """A CSV column of dates/times (or durations) as datetimes (timedeltas).

    The column must hold text that parses as dates and times (durations for a timedelta
    ``time``) or be a datetime (timedelta) column already; a column of numbers is refused
    (pandas would read them as nanoseconds since 1970), as is text that does not parse.
    At fit (``time`` None) text that parses as durations (``"3 days"``, ``"1h"``,
    ``"01:30:00"``) is read as durations, other text as dates and times; times of day without
    a date are refused (pandas would put today's date on them, so the same file read on
    another day would give other coordinates).
    """
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and series.notna().any():
        hint = "leave out ':time' for a numeric coordinate, or " if time is None else ""
        durations = time is not None and time.kind == "timedelta"
        example = "1 days 02:00:00" if durations else "2021-03-01 12:00"
        raise CommandError(
            f"column {name!r} does not hold dates/times: it holds numbers (dtype "
            f"{series.dtype}), which are not read as times; {hint}write the times as text "
            f"such as {example}"
        )
    try:
        if time is not None and time.kind == "timedelta":
            return pd.to_timedelta(series)
        if time is not None and time.tz is not None:  # any offsets, shown in the model's zone
            return pd.to_datetime(series, utc=True).dt.tz_convert(time.tz)
        if time is None and _durations(series):
            return pd.to_timedelta(series)
        with warnings.catch_warnings():  # (text of no one format is read item by item)
            warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
            try:
                out = pd.to_datetime(series)
            except ValueError as err:  # several UTC offsets (e.g. across a DST change)
                if "utc=True" not in str(err):
                    raise
                out = pd.to_datetime(series, utc=True)
        if time is None and _times_of_day(series, out):
            raise CommandError(
                f"column {name!r} holds times of day without a date (e.g. "
                f"{series.dropna().iloc[0]!r}); write dates with them (2021-03-01 12:00) or "
                "durations (0 days 12:00:00)"
            )
        return out
    except CommandError:
        raise
    except (ValueError, TypeError) as err:
        raise CommandError(f"column {name!r} does not hold dates/times: {err}") from None


def _is_text(series) -> bool:
    """Whether a column holds text (object or string dtype), as a CSV file's times do."""
    import pandas as pd

    return pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series)


def _durations(series) -> bool:
    """Whether a column of text parses as durations throughout (a datetime column does not)."""
    import pandas as pd

    if not _is_text(series):
        return pd.api.types.is_timedelta64_dtype(series.dtype)
    try:
        pd.to_timedelta(series)
    except (ValueError, TypeError):
        return False
    return True


def _times_of_day(series, parsed) -> bool:
    """Whether ``parsed`` (the column read as datetimes) got today's date from pandas: every
    value on today's date while no text names today's year."""
    import pandas as pd

    if not _is_text(series):
        return False
    valid = parsed.dropna()
    if valid.empty:
        return False
    naive = valid.dt.tz_localize(None) if valid.dt.tz is not None else valid
    today = pd.Timestamp.now().normalize()
    if not (naive.dt.normalize() == today).all():
        return False
    return not series.dropna().astype(str).str.contains(str(today.year)).any()


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


_FUNBAT_OPTIONS = ("--kernel", "--max-sweeps", "--time-unit")
_POISSON_OPTIONS = ("--method", "--num-warmup", "--num-samples", "--max-iter")


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
    for name, kind in parsed.items():  # "when:time": a continuous mode of dates and times
        if kind == "time":
            df[name] = _times(df[name], name, None)
            parsed[name] = "continuous"
    # default kinds from the column types, then the kinds given on the command line
    coords = parse_coords(df, list(parsed), args.value)
    coords |= {name: kind for name, kind in parsed.items() if kind is not None}
    if args.rank is None:
        rank = None  # bt.fit's default: "auto" for FunBaT, 3 for Poisson Tucker
    elif "auto" in args.rank and len(args.rank) > 1:
        raise CommandError("--rank: 'auto' stands alone (not one per coordinate)")
    else:
        rank = args.rank[0] if len(args.rank) == 1 else tuple(args.rank)
    poisson = args.model == "poisson-tucker"
    if poisson:  # every mode is categorical: numbers in a CSV are levels (e.g. months) there
        given_kinds = {n: k for n, k in parsed.items() if k not in (None, "categorical")}
        if given_kinds:
            raise CommandError(f"--model poisson-tucker modes are categorical; got {given_kinds}")
        coords = dict.fromkeys(coords, "categorical")
    given = {  # options of the other kind of model are refused, not silently dropped
        "--kernel": args.kernel,
        "--max-sweeps": args.max_sweeps,
        "--time-unit": args.time_unit,
        "--method": args.method,
        "--num-warmup": args.num_warmup,
        "--num-samples": args.num_samples,
        "--max-iter": args.max_iter,
    }
    theirs = _FUNBAT_OPTIONS if poisson else _POISSON_OPTIONS
    wrong = [flag for flag in theirs if given[flag] is not None]
    if wrong:
        raise CommandError(f"{', '.join(wrong)} not accepted by --model {args.model}")
    if poisson:
        options = {
            "method": args.method or "gibbs",
            "num_warmup": args.num_warmup,
            "num_samples": args.num_samples,
            "max_iter": args.max_iter,
        }
    else:
        options = {
            "kernel": args.kernel,  # (None: bt.fit's default)
            "max_sweeps": 100 if args.max_sweeps is None else args.max_sweeps,
            "time_unit": args.time_unit,
        }
    options = {k: v for k, v in options.items() if v is not None}
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
        seed=args.seed,
        progress=not args.quiet,
        **options,
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
    for mode in getattr(result, "modes", ()):  # times are text in a CSV file
        if getattr(mode, "time", None) is not None:
            df[mode.name] = _times(df[mode.name], mode.name, mode.time)
    # a PDE solution gives the GP mean only (no intervals yet)
    pred = result.predict(df) if result.kind == "pde" else result.predict(df, level=args.level)
    table = df[names].join(pred[[c for c in ("mean", "sd", "lower", "upper") if c in pred]])
    _write_csv(table, args.out)
    return 0


def _cmd_datasets(args) -> int:
    from bayestensor import datasets

    if args.action == "export":
        if args.file != "-" and not Path(args.file).parent.is_dir():
            raise CommandError(f"FILE {args.file!r}: folder does not exist")
        _write_csv(datasets.load(args.name), args.file)
        if args.file != "-":
            print(f"data set {args.name!r} written to {args.file}", file=sys.stderr)
        return 0

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
        help="coordinate columns, optionally with ':continuous', ':categorical' or ':time' "
        "(a column of dates and times, or durations: continuous)",
    )
    fit.add_argument("--value", required=True, help="the numeric column to model")
    fit.add_argument(
        "--rank",
        type=_rank,
        nargs="+",
        default=None,
        help="one rank, one per coordinate, or 'auto' (learned; the default for tucker/cp; "
        "poisson-tucker defaults to 3)",
    )
    fit.add_argument("--model", default="tucker", choices=["tucker", "cp", "poisson-tucker"])
    funbat = fit.add_argument_group("FunBaT (--model tucker or cp)")
    funbat.add_argument(
        "--kernel",
        default=None,
        choices=["matern12", "matern32", "matern52", "auto"],
        help="matern32",
    )
    funbat.add_argument("--max-sweeps", type=int, default=None, help="cap on the sweeps (100)")
    funbat.add_argument(
        "--time-unit",
        default=None,
        help="unit of time coordinates: W, D (default), h, min, s, ms, us or ns",
    )
    counts = fit.add_argument_group("Poisson Tucker (--model poisson-tucker)")
    counts.add_argument("--method", default=None, choices=["gibbs", "vi"], help="gibbs")
    counts.add_argument("--num-warmup", type=int, default=None, help="Gibbs warm-up sweeps")
    counts.add_argument("--num-samples", type=int, default=None, help="Gibbs kept sweeps")
    counts.add_argument("--max-iter", type=int, default=None, help="CAVI iterations (vi)")
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

    listing = sub.add_parser("datasets", help="list or export the bundled data sets")
    listing.set_defaults(handler=_cmd_datasets, action="list")
    actions = listing.add_subparsers(dest="action", parser_class=_Parser)
    actions.add_parser("list", help="list the bundled data sets (the default)")
    export = actions.add_parser("export", help="write a bundled data set as CSV")
    export.add_argument("name", help="a data set listed by 'bayestensor datasets'")
    export.add_argument("file", help="CSV file to write ('-': stdout)")
    return parser


def _rank(text: str) -> int | str:
    """A ``--rank`` entry: a whole number, or ``auto``."""
    if text == "auto":
        return text
    return int(text)


_rank.__name__ = "rank"  # argparse's message: "invalid rank value: 'x'"


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
    except BrokenPipeError:
        # the reader went away (``… | head``): stop quietly; send what is still buffered to
        # /dev/null so that the interpreter's final flush does not complain either
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (e.g. captured)
            pass
        return BROKEN_PIPE_STATUS
    except (ValueError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"bayestensor {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
