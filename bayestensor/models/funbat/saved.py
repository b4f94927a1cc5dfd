"""Checks of a saved FunBaT header (:meth:`.FitResult._from_record`): its fields, modes,
configuration and estimator settings, before anything is built from them."""

from __future__ import annotations

import typing

import numpy as np

from bayestensor import io
from bayestensor.checks import CONTINUOUS, check_ranks
from bayestensor.data import Mode
from bayestensor.kernels import check_kernel
from bayestensor.models.funbat.estimator import ESTIMATOR_PARAMS, FunBaT
from bayestensor.models.funbat.options import kernel_matches
from bayestensor.models.funbat.state import MODELS, FunBaTConfig

__all__ = ["HEADER_FIELDS", "check_saved_config", "is_number", "saved_estimator", "saved_modes"]


#: Fields of a saved FunBaT header (besides format, version, kind) and their JSON types.
HEADER_FIELDS = {
    "value": str,
    "modes": list[dict],
    "config": dict,
    "estimator": dict,
    "y_mean": float,
    "y_scale": float,
    "history": list[dict],
    "converged": bool,
}

#: Fields of a saved time mode's scale (:class:`bayestensor.modes.TimeScale`).
_TIME_FIELDS = {
    "kind": str,
    "unit": str,
    "resolution": str,
    "origin": int,
    "tz": str | None,
    "precision": str,
}


def is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def saved_modes(raw: list[dict]) -> tuple[Mode, ...]:
    """The saved modes, every field checked before :meth:`Mode.from_dict`."""
    modes = []
    for k, d in enumerate(raw):
        where = f"modes[{k}]"
        io.check_fields(d, ("name", "kind", "dtype", "values", "time", "log"), where)
        for key, tp in (("name", str), ("kind", str), ("values", list[str | int | float | bool])):
            io.field(d, key, tp, where)
        if "log" in d:
            io.field(d, "log", bool, where)
        if "time" in d:
            time = io.field(d, "time", dict, where)
            io.check_fields(time, _TIME_FIELDS, f"{where}.time")
            for key, tp in _TIME_FIELDS.items():
                io.field(time, key, tp, f"{where}.time")
        if "dtype" in d:
            dtype = io.field(d, "dtype", str, where)
            try:
                ok = dtype == "object" or np.dtype(dtype).kind in "biufUmM"
            except TypeError:
                ok = False
            if not ok:
                raise ValueError(f"saved field {where}.dtype is not a plain dtype: {dtype!r}")
        try:
            modes.append(Mode.from_dict(d))
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"saved field {where}: {err}") from None
    names = [m.name for m in modes]
    if not modes or len(set(names)) != len(names):
        raise ValueError(f"saved field header.modes must name distinct modes, got {names}")
    return tuple(modes)


def check_saved_config(cfg: FunBaTConfig, modes: tuple[Mode, ...]) -> None:
    """The saved config against itself and the saved modes (what the state's layout needs)."""
    K = len(modes)
    if cfg.model not in MODELS:
        raise ValueError(f"saved field config.model must be one of {MODELS}, got {cfg.model!r}")
    try:
        check_ranks(cfg.ranks, K, equal=cfg.model == "cp")
        if isinstance(cfg.kernel, str):
            check_kernel(cfg.kernel)
        else:
            if len(cfg.kernel) != K:
                raise ValueError(f"kernel has {len(cfg.kernel)} entries for {K} modes")
            for k, name in enumerate(cfg.kernel):
                if (name is None) != (modes[k].kind != CONTINUOUS):
                    raise ValueError(f"kernel[{k}] must be null exactly for categorical modes")
                if name is not None:
                    check_kernel(name)
        if cfg.learn_period and len(cfg.learn_period) != K:
            raise ValueError(f"learn_period has {len(cfg.learn_period)} entries for {K} modes")
        if cfg.harmonics < 1:
            raise ValueError(f"harmonics must be at least 1, got {cfg.harmonics}")
    except ValueError as err:
        raise ValueError(f"saved field config: {err}") from None
    if len(cfg.ranks) != K:
        raise ValueError(f"saved field config.ranks has {len(cfg.ranks)} entries for {K} modes")
    if tuple(cfg.sizes) != tuple(m.size for m in modes):
        raise ValueError(
            f"saved field config.sizes {cfg.sizes} does not match the saved modes' numbers of "
            f"values {tuple(m.size for m in modes)}"
        )
    if tuple(cfg.continuous) != tuple(m.kind == CONTINUOUS for m in modes):
        raise ValueError("saved field config.continuous does not match the saved modes' kinds")
    if not 0 < cfg.damping <= 1 or not (cfg.a0 > 0 and cfg.b0 > 0) or cfg.hyper_steps < 0:
        raise ValueError("saved field config: damping, a0, b0 or hyper_steps out of range")
    if cfg.chunk is not None and cfg.chunk < 1:
        raise ValueError(f"saved field config.chunk must be positive, got {cfg.chunk}")


def saved_estimator(raw: dict, cfg: FunBaTConfig, modes: tuple[Mode, ...]) -> FunBaT:
    """The saved estimator settings, type-checked, consistent with the config."""
    io.check_fields(raw, ESTIMATOR_PARAMS, "estimator")
    hints = typing.get_type_hints(FunBaT.__init__)
    params = {
        n: io.field(raw, n, hints.get(n, typing.Any), "estimator")
        for n in ESTIMATOR_PARAMS
        if n in raw or n not in _ADDED_PARAMS  # files written before these were added
    }
    params.setdefault("intercept", False)  # (fitted before the intercept was learned)
    try:
        est = FunBaT(**params)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"saved field estimator: {err}") from None
    named = {m.name: cfg.mode_kernel(k) for k, m in enumerate(modes) if cfg.continuous[k]}
    asked = est.kernel if isinstance(est.kernel, dict) else dict.fromkeys(named, est.kernel)
    same = all(kernel_matches(k, named.get(c)) for c, k in asked.items())
    if est.model != cfg.model or not same or isinstance(est.rank, str) != cfg.ard:
        raise ValueError(
            "saved fields estimator.model/kernel/rank do not match config.model/kernel/ard"
        )
    return est


#: Estimator settings added after the format's first version: absent from older files.
_ADDED_PARAMS = ("period", "max_rank", "intercept")


def check_saved_covariances(arrays: dict[str, np.ndarray]) -> None:
    """The saved posterior covariances (arrays named ``…/cov`` or ``…/state_cov``, each a
    stack of square matrices) must be symmetric with a non-negative diagonal, up to rounding:
    anything else is not a posterior a fit made, and would predict meaningless sds."""
    for name, a in arrays.items():
        if not name.endswith(("/cov", "/state_cov")) or a.ndim < 2 or a.shape[-1] != a.shape[-2]:
            continue
        scale = float(np.max(np.abs(a), initial=0.0))  # (rounding: relative to the largest)
        diagonal = np.diagonal(a, axis1=-2, axis2=-1)
        asymmetry = np.abs(a - np.swapaxes(a, -1, -2))
        if np.any(diagonal < -1e-6 * scale) or np.any(asymmetry > 1e-4 * scale):
            raise ValueError(
                f"saved array {name!r} is not a covariance (a symmetric stack of matrices with "
                "a non-negative diagonal)"
            )
