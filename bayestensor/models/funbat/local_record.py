"""Saving and loading a FunBaT result's local residual process (:mod:`.local`).

The header holds ``{"asked", "kind", "mode", "gains", "calibration", "seconds", "scale",
"nu", "t_scale", "loo", "process"}`` (``process``: the process's settings, or null when
``local="auto"`` kept none; ``scale``: the unit the process was fitted in, 1 when absent, as in
files written before it existed; ``nu``, ``t_scale``: the predictive Student-t, null and 1 —
Gaussian — when absent; ``loo``: the candidates' leave-one-out errors, empty when absent;
``offset``: the values' mean when the process is the neighbour GP on the values alone, null
otherwise and when absent); the
arrays
``local/train`` (the training rows' coordinates as the fit encodes them, one column per entry
of ``process.columns``), ``local/r`` (their residuals) and ``local/theta`` (the learned log
hyperparameters). A process is rebuilt from these exactly as its fit left it, so a loaded
result predicts what the saved one did. Files without a ``local`` field (written before it
existed, or fitted with ``local=None``) load as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayestensor import io
from bayestensor.kernels import check_kernel
from bayestensor.models.funbat.local import FibreGP, LocalFit, NeighbourGP
from bayestensor.models.funbat.options import check_local_option

__all__ = ["local_from_record", "local_layout", "local_record"]

_FIELDS = {
    "asked": str,
    "kind": str | None,
    "mode": str | None,
    "gains": dict[str, float],
    "calibration": float,
    "seconds": float,
    "process": dict | None,
}
#: Header fields that older files may lack, and their values then.
_OPTIONAL = {
    "scale": (float, 1.0),
    "nu": (float | None, None),
    "t_scale": (float, 1.0),
    "loo": (dict[str, float], {}),
    "offset": (float | None, None),
}
_FIBRE = {"columns": list[str], "kernel": str, "maxiter": int, "nll": float}
_NEIGHBOURS = {
    "columns": list[str],
    "m": int,
    "m_fit": int,
    "rounds": int,
    "maxiter": int,
    "max_fit": int | None,
    "seed": int,
    "nll": float,
    "continuous": list[str],
    "categorical": list[str],
}


def local_record(loc: LocalFit) -> tuple[dict, dict[str, np.ndarray]]:
    """The header field and the arrays (``local/...``) of ``loc``."""
    header = {k: getattr(loc, k) for k in (*_FIELDS, *_OPTIONAL) if k != "process"}
    header["nu"] = float(loc.nu) if np.isfinite(loc.nu) else None  # JSON has no inf
    header["gains"] = {k: float(v) for k, v in loc.gains.items()}
    header["loo"] = {k: float(v) for k, v in loc.loo.items()}
    p = loc.process
    if p is None:
        return {**header, "process": None}, {}
    names = _FIBRE if isinstance(p, FibreGP) else _NEIGHBOURS
    settings = {k: getattr(p, k) for k in names if k != "columns"}
    settings["columns"] = list(p._train.columns)
    arrays = {
        "local/train": p._train.to_numpy(dtype=np.float64),
        "local/r": np.asarray(p._r, dtype=np.float64),
        "local/theta": np.asarray(p.theta, dtype=np.float64),
    }
    return {**header, "process": settings}, arrays


def local_layout(raw) -> dict[str, io.Expect]:
    """The arrays a saved ``local`` header field implies (none when no process was kept)."""
    if not isinstance(raw, dict) or raw.get("process") is None:
        return {}
    columns = raw["process"].get("columns") if isinstance(raw["process"], dict) else None
    width = len(columns) if isinstance(columns, list) else None
    return {
        "local/train": io.Expect((None, width)),
        "local/r": io.Expect((None,)),
        "local/theta": io.Expect((None,)),
    }


def local_from_record(result, raw, arrays: dict[str, np.ndarray]) -> LocalFit:
    """The :class:`LocalFit` of a loaded ``result`` from its saved header field and arrays
    (already checked against :func:`local_layout`)."""
    io.check_fields(raw, (*_FIELDS, *_OPTIONAL), "local")
    h = {k: io.field(raw, k, tp, "local") for k, tp in _FIELDS.items()}
    for k, (tp, default) in _OPTIONAL.items():
        h[k] = io.field(raw, k, tp, "local") if k in raw else default
    if not np.isfinite(h["scale"]) or h["scale"] <= 0:
        raise ValueError("saved field local.scale must be a finite number > 0")
    if not np.isfinite(h["t_scale"]) or h["t_scale"] <= 0:
        raise ValueError("saved field local.t_scale must be a finite number > 0")
    if h["offset"] is not None and not np.isfinite(h["offset"]):
        raise ValueError("saved field local.offset must be null or a finite number")
    if h["nu"] is not None and not (np.isfinite(h["nu"]) and h["nu"] > 0):
        raise ValueError("saved field local.nu must be null (Gaussian) or a finite number > 0")
    tails = (np.inf if h["nu"] is None else h["nu"], h["t_scale"])
    check_local_option(h["asked"])
    names = {m.name: m.kind for m in result.modes}
    if not np.isfinite(h["calibration"]) or h["calibration"] < 1:
        raise ValueError("saved field local.calibration must be a finite number ≥ 1")
    if h["process"] is None:
        if h["kind"] is not None or h["offset"] is not None:
            raise ValueError("saved fields local.kind, offset must be null without a process")
        return LocalFit(
            result,
            None,
            None,
            None,
            h["gains"],
            h["calibration"],
            h["seconds"],
            h["asked"],
            h["scale"],
            None,
            *tails,
            dict(h["loo"]),
        )
    fields = {"fibre": _FIBRE, "neighbours": _NEIGHBOURS}.get(h["kind"])
    if fields is None:
        raise ValueError(f"saved field local.kind must be 'fibre' or 'neighbours', got {h['kind']}")
    io.check_fields(h["process"], fields, "local.process")
    s = {k: io.field(h["process"], k, tp, "local.process") for k, tp in fields.items()}
    columns = s.pop("columns")
    if len(set(columns)) != len(columns) or not set(columns) <= set(names):
        raise ValueError(f"saved field local.process.columns must name distinct modes: {columns}")
    train, r, theta = arrays["local/train"], arrays["local/r"], arrays["local/theta"]
    if h["kind"] == "fibre":
        if h["mode"] not in columns or names[h["mode"]] != "continuous" or theta.shape != (3,):
            raise ValueError("saved local fibre process: its mode or theta does not fit the modes")
        check_kernel(s["kernel"])
        if h["offset"] is not None:
            raise ValueError("saved field local.offset must be null for a fibre process")
        process = FibreGP(h["mode"], kernel=s["kernel"], maxiter=s["maxiter"], nll=s["nll"])
    else:
        fits = s["continuous"] + s["categorical"] == columns and theta.shape == (
            len(s["continuous"]) + 2,
        )
        if not fits or h["mode"] is not None:
            raise ValueError("saved local neighbour process: its columns or theta do not fit")
        if any(names[c] != "continuous" for c in s["continuous"]) or any(
            names[c] == "continuous" for c in s["categorical"]
        ):
            raise ValueError("saved local neighbour process: its column kinds do not fit the modes")
        process = NeighbourGP(**s)
    if len(r) != len(train) or not len(r):
        raise ValueError("saved arrays local/train and local/r must have the same rows")
    process.theta = np.asarray(theta, dtype=np.float64)
    process._restore(pd.DataFrame(train, columns=columns), np.asarray(r, dtype=np.float64))
    return LocalFit(
        result,
        h["kind"],
        h["mode"],
        process,
        h["gains"],
        h["calibration"],
        h["seconds"],
        h["asked"],
        h["scale"],
        None,
        *tails,
        dict(h["loo"]),
        h["offset"],
    )
