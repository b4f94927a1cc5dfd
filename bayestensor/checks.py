"""Argument checks shared by every front door: DataFrames and columns, ranks, counts, levels.

Each check raises a :class:`ValueError` that names the argument or column and says what was
expected, before anything is traced or compiled. The models and :func:`bayestensor.fit` call
these instead of writing their own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Kind of a mode whose coordinates are real numbers.
CONTINUOUS = "continuous"
#: Kind of a mode whose coordinates are labels from a finite set.
CATEGORICAL = "categorical"
#: The kinds a mode can have.
MODE_KINDS = (CONTINUOUS, CATEGORICAL)

#: Default number of components per mode of every tensor model.
DEFAULT_RANK = 3


def is_int(v: Any) -> bool:
    """Whether ``v`` is an integer (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_int(name: str, v: Any, minimum: int = 1) -> int:
    """``v`` as an int, or a ValueError unless it is an integer ≥ ``minimum``."""
    if not is_int(v) or v < minimum:
        what = "a positive int" if minimum == 1 else f"an int ≥ {minimum}"
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return int(v)


def check_seed(seed: Any) -> int:
    """A random seed: an int in ``[0, 2**32)`` (what ``jax.random.key`` takes in any mode)."""
    if not is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    return int(seed)


def check_bool(name: str, v: Any) -> bool:
    """``v`` as a bool, or a ValueError unless it is True or False (a string or number is no
    switch)."""
    if not isinstance(v, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_positive(name: str, v: Any) -> float:
    """``v`` as a float, or a ValueError unless it is a finite positive number (not a bool:
    ``True`` is no setting's 1)."""
    try:
        x = float("nan") if isinstance(v, bool | np.bool_) else float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {v!r}") from None
    if not (np.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return x


def check_nonnegative(name: str, v: Any) -> float:
    """``v`` as a float, or a ValueError unless it is a finite number ≥ 0 (not a bool)."""
    try:
        x = float("nan") if isinstance(v, bool | np.bool_) else float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ≥ 0, got {v!r}") from None
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a number ≥ 0, got {v!r}")
    return x


def check_level(level: Any) -> float:
    """The probability of a central interval, or a ValueError unless it lies in (0, 1)."""
    try:
        x = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}") from None
    if not 0.0 < x < 1.0:
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}")
    return x


def check_ranks(rank: Any, K: int, equal: bool = False) -> tuple[int, ...]:
    """Validate ``rank`` (one int for every mode, or one per mode) and return it per mode.

    Parameters
    ----------
    rank : int or sequence of int
        Number of components per mode.
    K : int
        Number of modes.
    equal : bool
        Require one rank shared by every mode (CP).

    Returns
    -------
    tuple of int
        ``(R_1, …, R_K)``.

    Raises
    ------
    ValueError
        If an entry is not a positive integer, the length is not 1 or ``K``, or ``equal`` and
        the ranks differ.
    """
    ranks = [rank] if np.ndim(rank) == 0 else list(rank)
    if not ranks or not all(is_int(r) for r in ranks):
        raise ValueError(f"rank must be a positive int or one positive int per mode, got {rank!r}")
    if any(r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive, got {rank!r}")
    if len(ranks) not in (1, K):
        raise ValueError(f"rank has {len(ranks)} entries but the data have {K} modes")
    ranks = tuple(int(r) for r in ranks) * (K if len(ranks) == 1 else 1)
    if equal and len(set(ranks)) != 1:
        raise ValueError(f"model='cp' needs equal ranks on every mode, got {rank!r}")
    return ranks


def cap_ranks(ranks: tuple[int, ...], shape: tuple[int, ...], model: str) -> tuple[int, ...]:
    """Ranks capped at what the data can identify, with a warning when any is lowered.

    A Tucker mode of ``N_k`` unique coordinates has multilinear rank at most ``N_k``; the CP
    rank of an ``N_1 × ⋯ × N_K`` tensor is at most ``Π_k N_k / max_k N_k``. Larger ranks only
    add unidentifiable components (and, for Tucker, a core of ``Π_k R_k`` cells whose second
    moments cost ``(Π_k R_k)²`` memory per observation block).
    """
    import warnings

    if model == "cp":
        bound = max(1, math.prod(shape) // max(shape))
        capped = tuple(min(r, bound) for r in ranks)
    else:
        capped = tuple(min(r, N) for r, N in zip(ranks, shape, strict=True))
    if capped != tuple(ranks):
        warnings.warn(
            f"rank {tuple(ranks)} exceeds what a tensor of shape {tuple(shape)} can identify; "
            f"using {capped}",
            UserWarning,
            stacklevel=3,
        )
    return capped


def standardisation(y: np.ndarray) -> tuple[float, float]:
    """``(mean, sd)`` of ``y`` in float64, safe from overflow and underflow (``sd`` is 1 for a
    constant ``y``); values are z-scored with them before any float32 computation."""
    y = np.asarray(y, dtype=np.float64)
    if y.size and np.all(y == y.flat[0]):  # constant: its value (a mean of copies of 0.1 is
        return float(y.flat[0]), 1.0  # not 0.1, and the deviations' sd then came out 0)
    mean = float(np.mean(y / 2.0) * 2.0)  # halves: no overflow near the float64 limit
    dev = y / 2.0 - mean / 2.0
    top = float(np.max(np.abs(dev)))
    if top == 0.0 or not np.isfinite(top):
        return mean, 1.0
    return mean, float(2.0 * top * np.std(dev / top))


def check_options(model: str, options: dict, allowed: Sequence[str]) -> None:
    """Raise if ``options`` holds a keyword the chosen model does not take."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"{unknown} not accepted by model={model!r}; its options are {sorted(allowed)}"
        )


def check_finite_result(name: str, *arrays: Any) -> None:
    """Raise a ValueError if a computed result holds NaN or inf (never return one)."""
    for a in arrays:
        a = np.asarray(a)
        if not np.all(np.isfinite(a)):
            raise ValueError(
                f"{name} came out non-finite ({int(np.size(a) - np.isfinite(a).sum())} of "
                f"{np.size(a)} values); check the data scale and the settings"
            )


def python_scalar(v: Any) -> Any:
    """Convert a NumPy scalar to the equivalent Python scalar; leave others unchanged."""
    return v.item() if isinstance(v, np.generic) else v


def is_numeric(series: pd.Series) -> bool:
    """Whether a column holds real numbers (integers or floats, not bool or complex)."""
    dtype = series.dtype
    return (
        pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)
    ) and not pd.api.types.is_bool_dtype(dtype)


def is_time(series: pd.Series) -> bool:
    """Whether a column holds datetimes (naive or tz-aware) or timedeltas."""
    dtype = series.dtype
    return pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)


def list_columns(columns: pd.Index) -> str:
    """Format the available columns of a DataFrame for an error message."""
    names = [python_scalar(c) for c in columns]
    if len(names) > 20:
        return f"{names[:20]} ... ({len(names)} in total)"
    return str(names)


def check_frame(df: Any, argument: str = "df") -> None:
    """Raise unless ``df`` is a non-empty DataFrame."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{argument} must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{argument} is empty (0 rows); at least one row is needed")


def check_column(df: pd.DataFrame, name: Hashable, role: str = "column") -> None:
    """Raise unless ``name`` is exactly one column of ``df``."""
    if name not in df.columns:
        raise ValueError(
            f"{role} {name!r} not found in the DataFrame; "
            f"available columns: {list_columns(df.columns)}"
        )
    if int((df.columns == name).sum()) > 1:
        raise ValueError(f"{role} {name!r} appears more than once in the DataFrame")


def float_array(series: pd.Series) -> np.ndarray:
    """A numeric column as a float64 array, missing values as NaN."""
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def count_invalid(series: pd.Series, kind: str) -> int:
    """Number of rows that are NaN, inf or otherwise missing (NaT) in a column."""
    if is_time(series):
        return int(series.isna().sum())
    if kind == CONTINUOUS:
        return int(np.count_nonzero(~np.isfinite(float_array(series))))
    bad = series.isna().to_numpy()
    if is_numeric(series):
        bad = bad | ~np.isfinite(float_array(series))
    return int(np.count_nonzero(bad))


def check_finite(series: pd.Series, name: str, kind: str, value: bool = False) -> None:
    """Raise if a column has NaN, inf or missing values (``value``: the value column, whose
    message says how to leave unobserved cells out)."""
    n_bad = count_invalid(series, kind)
    if n_bad:
        extra = "" if kind == CONTINUOUS else " (missing values such as None are not categories)"
        if value:
            extra = (
                f"; a cell with no observation needs no row: drop such rows first, e.g. "
                f"df.dropna(subset=[{name!r}]) (an xarray DataArray's NaN cells are left out "
                f"by bt.fit itself)"
            )
        rows = "row" if n_bad == 1 else "rows"
        raise ValueError(f"column {name!r} has {n_bad} {rows} with NaN or inf values{extra}")


def check_value_column(df: pd.DataFrame, value: Any, coords: Sequence[str]) -> None:
    """Raise unless ``value`` names one numeric column of ``df`` that is not a coordinate."""
    if not isinstance(value, str):
        raise ValueError(f"value must be a column name (str) or None, got {value!r}")
    if value in coords:
        raise ValueError(
            f"value column {value!r} is also listed in coords; a column cannot be both"
        )
    check_column(df, value, role="value column")
    if not is_numeric(df[value]):
        raise ValueError(
            f"value column {value!r} has dtype {df[value].dtype}; expected a numeric "
            "(integer or float) column"
        )


def observed_values(df: pd.DataFrame, value: str) -> np.ndarray:
    """The value column of rows to compare with predictions (plots, observed data) as float64,
    missing values as NaN; a ValueError naming the column unless it is numeric."""
    if not is_numeric(df[value]):
        raise ValueError(
            f"value column {value!r} has dtype {df[value].dtype}; expected a numeric "
            "(integer or float) column of observed values"
        )
    return float_array(df[value])


def check_counts(df: pd.DataFrame, value: Any) -> np.ndarray:
    """The count column ``value`` as float64, or a ValueError naming it."""
    if not isinstance(value, str):
        raise ValueError(f"value must be a column name (str), got {value!r}")
    check_column(df, value, role="value column")
    col = df[value]
    if not is_numeric(col):
        raise ValueError(f"count column {value!r} has dtype {col.dtype}; expected numeric counts")
    y = float_array(col)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError(f"count column {value!r} has {int(bad.sum())} NaN or infinite values")
    if (y < 0).any():
        raise ValueError(f"count column {value!r} has {int((y < 0).sum())} negative values")
    frac = y != np.round(y)
    if frac.any():
        raise ValueError(
            f"count column {value!r} has {int(frac.sum())} non-integer values "
            f"(e.g. {y[frac][0]!r}); Poisson Tucker models counts"
        )
    return y
