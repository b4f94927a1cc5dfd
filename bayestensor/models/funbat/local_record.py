"""Saving and loading a FunBaT result's local residual process (:mod:`.local`).

The header holds ``{"asked", "kind", "mode", "gains", "calibration", "seconds", "scale",
"nu", "t_scale", "loo", "process"}`` (``process``: the process's settings, or null when
``local="auto"`` kept none; ``scale``: the unit the process was fitted in, 1 when absent, as in
files written before it existed; ``nu``, ``t_scale``: the predictive Student-t, null and 1 —
Gaussian — when absent; ``loo``: the candidates' leave-one-out errors, empty when absent;
``offset``: the values' mean when the neighbour GP on the values enters the predictions, null
otherwise and when absent; ``values``, ``weight``: that GP's settings where the predictions
blend it with the low-rank part, and its weight there, null and 0 when absent; ``level``: the
predictive scale's growth with the level, ``[b, centre, unit, lo, hi, floor]``, null — one scale —
when absent: :func:`~.local_tails.level_factor`); the arrays
``local/train`` (the training rows' coordinates as the fit encodes them, one column per entry
of ``process.columns``), ``local/r`` (their residuals) and ``local/theta`` (the learned log
hyperparameters), and for a blend ``local/values/train``, ``local/values/r`` (the values less
``offset``, in the process's unit) and ``local/values/theta``. A process is rebuilt from these
exactly as its fit left it, so a loaded result predicts what the saved one did. The settings of
the exact GP on the values of small data (:mod:`.local_anova`) hold ``"gp": "anova"``; those
without ``gp`` are a neighbour GP's, as in files written before it existed. Files without a
``local`` field (written before it existed, or fitted with ``local=None``) load as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayestensor import io
from bayestensor.kernels import check_kernel
from bayestensor.models.funbat.local import FibreGP, LocalFit, NeighbourGP
from bayestensor.models.funbat.local_anova import AnovaGP
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
    "values": (dict | None, None),
    "weight": (float, 0.0),
    "level": (tuple[float, float, float, float, float, float] | None, None),
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

#: The exact GP on the values of small data (:mod:`.local_anova`): ``"gp": "anova"`` tells it
#: from a neighbour GP (whose settings have no ``gp``).
_ANOVA = {
    "columns": list[str],
    "gp": str,
    "maxiter": int,
    "nll": float,
    "continuous": list[str],
    "categorical": list[str],
}


def _process_record(p, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
    names = _FIBRE if isinstance(p, FibreGP) else _ANOVA if isinstance(p, AnovaGP) else _NEIGHBOURS
    settings = {k: getattr(p, k) for k in names if k not in ("columns", "gp")}
    settings["columns"] = list(p._train.columns)
    if isinstance(p, AnovaGP):
        settings["gp"] = "anova"
    arrays = {
        f"{prefix}/train": p._train.to_numpy(dtype=np.float64),
        f"{prefix}/r": np.asarray(p._r, dtype=np.float64),
        f"{prefix}/theta": np.asarray(p.theta, dtype=np.float64),
    }
    return settings, arrays


def local_record(loc: LocalFit) -> tuple[dict, dict[str, np.ndarray]]:
    """The header field and the arrays (``local/...``) of ``loc``."""
    header = {k: getattr(loc, k) for k in (*_FIELDS, *_OPTIONAL) if k not in ("process", "values")}
    header["nu"] = float(loc.nu) if np.isfinite(loc.nu) else None  # JSON has no inf
    header["gains"] = {k: float(v) for k, v in loc.gains.items()}
    header["loo"] = {k: float(v) for k, v in loc.loo.items()}
    header["weight"] = float(loc.weight)
    header["level"] = None if loc.level is None else [float(v) for v in loc.level]
    header["process"], header["values"], arrays = None, None, {}
    if loc.process is not None:
        header["process"], arrays = _process_record(loc.process, "local")
    if loc.values is not None:
        header["values"], more = _process_record(loc.values, "local/values")
        arrays.update(more)
    return header, arrays


def _layout(settings, prefix: str) -> dict[str, io.Expect]:
    columns = settings.get("columns") if isinstance(settings, dict) else None
    width = len(columns) if isinstance(columns, list) else None
    return {
        f"{prefix}/train": io.Expect((None, width)),
        f"{prefix}/r": io.Expect((None,)),
        f"{prefix}/theta": io.Expect((None,)),
    }


def local_layout(raw) -> dict[str, io.Expect]:
    """The arrays a saved ``local`` header field implies (none when no process was kept)."""
    if not isinstance(raw, dict):
        return {}
    out = {} if raw.get("process") is None else _layout(raw["process"], "local")
    if raw.get("values") is not None:
        out.update(_layout(raw["values"], "local/values"))
    return out


def _check_kinds(s: dict, names: dict, what: str) -> None:
    if any(names[c] != "continuous" for c in s["continuous"]) or any(
        names[c] == "continuous" for c in s["categorical"]
    ):
        raise ValueError(f"saved {what}: its column kinds do not fit the modes")


def _anova(settings, arrays, prefix: str, names: dict, what: str) -> AnovaGP:
    """A saved exact GP on the values, rebuilt (its settings checked against the modes)."""
    io.check_fields(settings, _ANOVA, what)
    s = {k: io.field(settings, k, tp, what) for k, tp in _ANOVA.items()}
    columns = s.pop("columns")
    if s.pop("gp") != "anova" or s["maxiter"] < 1:
        raise ValueError(f"saved {what}: gp must be 'anova' and maxiter ≥ 1")
    theta = arrays[f"{prefix}/theta"]
    n_cont, D = len(s["continuous"]), len(columns)
    fits = s["continuous"] + s["categorical"] == columns and theta.shape == (n_cont + D + 3,)
    if not fits or len(set(columns)) != len(columns) or not set(columns) <= set(names):
        raise ValueError(f"saved {what}: its columns or theta do not fit")
    _check_kinds(s, names, what)
    return _restored(AnovaGP(**s), columns, arrays, prefix)


def _values_gp(settings, arrays, prefix: str, names: dict, what: str):
    """A saved GP on the values (or neighbour residual process): the exact one or the
    neighbour GP, as its settings say."""
    if isinstance(settings, dict) and "gp" in settings:
        return _anova(settings, arrays, prefix, names, what)
    return _neighbours(settings, arrays, prefix, names, what)


def _neighbours(settings, arrays, prefix: str, names: dict, what: str) -> NeighbourGP:
    """A saved neighbour GP, rebuilt (its settings checked against the modes)."""
    io.check_fields(settings, _NEIGHBOURS, what)
    s = {k: io.field(settings, k, tp, what) for k, tp in _NEIGHBOURS.items()}
    columns = s.pop("columns")
    counts = ("m", "m_fit", "rounds", "maxiter")
    if any(s[k] < 1 for k in counts) or (s["max_fit"] is not None and s["max_fit"] < 1):
        raise ValueError(f"saved {what}: its {', '.join(counts)} and max_fit must be ≥ 1")
    theta = arrays[f"{prefix}/theta"]
    fits = s["continuous"] + s["categorical"] == columns and theta.shape == (
        len(s["continuous"]) + 2,
    )
    if not fits or len(set(columns)) != len(columns) or not set(columns) <= set(names):
        raise ValueError(f"saved {what}: its columns or theta do not fit")
    _check_kinds(s, names, what)
    return _restored(NeighbourGP(**s), columns, arrays, prefix)


def _restored(process, columns, arrays, prefix: str):
    train, r, theta = (arrays[f"{prefix}/{k}"] for k in ("train", "r", "theta"))
    if len(r) != len(train) or not len(r):
        raise ValueError(f"saved arrays {prefix}/train and {prefix}/r must have the same rows")
    process.theta = np.asarray(theta, dtype=np.float64)
    return process._restore(pd.DataFrame(train, columns=columns), np.asarray(r, np.float64))


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
    level = h["level"]
    if level is not None and (
        not np.all(np.isfinite(level)) or level[2] <= 0 or level[3] > level[4] or level[5] < 0
    ):
        raise ValueError(
            "saved field local.level must be null or [b, centre, unit, lo, hi, floor]: finite "
            "numbers, unit > 0, lo ≤ hi and floor ≥ 0"
        )
    check_local_option(h["asked"])
    names = {m.name: m.kind for m in result.modes}
    if not np.isfinite(h["calibration"]) or h["calibration"] < 1:
        raise ValueError("saved field local.calibration must be a finite number ≥ 1")
    weight, values = h["weight"], None
    if not (0.0 <= weight <= 1.0) or (h["values"] is None) != (weight == 0.0):
        raise ValueError("saved field local.weight must be in (0, 1] with local.values, else 0")
    if h["values"] is not None:
        if h["offset"] is None:
            raise ValueError("saved field local.offset must be a number with local.values")
        values = _values_gp(h["values"], arrays, "local/values", names, "local.values")
    process = None
    if h["process"] is None:
        if h["kind"] is not None or (h["offset"] is not None and values is None):
            raise ValueError("saved fields local.kind, offset must be null without a process")
    elif h["kind"] == "fibre":
        io.check_fields(h["process"], _FIBRE, "local.process")
        s = {k: io.field(h["process"], k, tp, "local.process") for k, tp in _FIBRE.items()}
        columns, theta = s.pop("columns"), arrays["local/theta"]
        if len(set(columns)) != len(columns) or not set(columns) <= set(names):
            raise ValueError(f"saved local.process.columns must name distinct modes: {columns}")
        if h["mode"] not in columns or names[h["mode"]] != "continuous" or theta.shape != (3,):
            raise ValueError("saved local fibre process: its mode or theta does not fit the modes")
        check_kernel(s["kernel"])
        if h["offset"] is not None and values is None:
            raise ValueError("saved field local.offset must be null for a fibre process")
        process = FibreGP(h["mode"], kernel=s["kernel"], maxiter=s["maxiter"], nll=s["nll"])
        process = _restored(process, columns, arrays, "local")
    elif h["kind"] == "neighbours":
        if h["mode"] is not None:
            raise ValueError("saved field local.mode must be null for a neighbour process")
        # (a neighbour residual process, or the GP on the values alone: offset set)
        process = _values_gp(h["process"], arrays, "local", names, "local neighbour process")
        if isinstance(process, AnovaGP) and h["offset"] is None:
            raise ValueError("saved local process: the exact GP on the values needs local.offset")
    else:
        raise ValueError(f"saved field local.kind must be 'fibre' or 'neighbours', got {h['kind']}")
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
        values,
        weight,
        level=level,
    )
