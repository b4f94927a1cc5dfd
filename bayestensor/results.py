"""The result contract shared by FunBaT, Poisson Tucker and the PDE solution.

Every result says what was fitted and how well in its ``repr`` (and ``_repr_html_`` in a
notebook), returns a table from ``summary()``, saves itself with ``save(path)`` in the one
format of :mod:`bayestensor.io`, and comes back from :func:`load` whatever its kind. Where a
result predicts at rows of a DataFrame it uses one column convention
(:func:`prediction_frame`): ``mean, sd, lower, upper`` describe a new observation, and
``sd_f, lower_f, upper_f`` the latent function (the noise-free value, or the rate), Gaussian
with standard deviation ``sd``; a ``nu`` column, where present, makes the predictive a
Student-t with ``nu`` degrees of freedom whose scale is ``sd``.
"""

from __future__ import annotations

import html
import importlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from bayestensor import io

__all__ = ["KINDS", "Result", "load", "prediction_frame"]

#: Saved kind → (module, class) of the result that reads it back.
KINDS = {
    "funbat": ("bayestensor.models.funbat.result", "FitResult"),
    "poisson-tucker": ("bayestensor.models.poisson_tucker.result", "PoissonTuckerResult"),
    "pde": ("bayestensor.pde.result", "PDESolution"),
}

#: Columns of every ``predict`` (the ``*_f`` ones where a latent function exists; ``nu``
#: where the predictive is a Student-t).
PREDICTION_COLUMNS = ("mean", "sd", "lower", "upper", "sd_f", "lower_f", "upper_f", "nu")


class Result:
    """Base of the three result kinds: repr, HTML repr, save; subclasses fill in the rest.

    A subclass sets ``kind`` (a key of :data:`KINDS`) and implements :meth:`title` (one line:
    what was fitted, how well), :meth:`summary` (a :class:`pandas.DataFrame`), ``_record()``
    (``(header, arrays)`` for :func:`bayestensor.io.write`) and the classmethod
    ``_from_record(header, arrays)``.
    """

    kind: ClassVar[str]

    def title(self) -> str:
        """One line: the model, the data and the fit's headline numbers."""
        raise NotImplementedError

    def summary(self) -> pd.DataFrame:
        """A table describing the fit (one row per mode or dimension)."""
        raise NotImplementedError

    def _record(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def _from_record(cls, header: dict, arrays: dict[str, np.ndarray]) -> Result:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.title()}\n{self.summary().to_string()}"

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self.title())}</b></p>{self.summary().to_html()}"

    def save(self, path: str | Path) -> Path:
        """Save to one file (zip of JSON + ``.npz``, no pickle); :func:`bayestensor.load` reads it.

        Parameters
        ----------
        path : str or Path
            Destination file (e.g. ``"model.bt"``); its folder must exist.

        Returns
        -------
        Path
        """
        header, arrays = self._record()
        return io.write(path, self.kind, header, arrays)


def load(path: str | Path) -> Result:
    """Load any saved result (FunBaT, Poisson Tucker or PDE solution).

    Parameters
    ----------
    path : str or Path
        A file written by ``result.save``.

    Returns
    -------
    Result
        A :class:`~bayestensor.models.funbat.FitResult`,
        :class:`~bayestensor.models.poisson_tucker.PoissonTuckerResult` or
        :class:`~bayestensor.pde.PDESolution`, whichever was saved.

    Raises
    ------
    ValueError
        If the file is not a bayestensor model, is of another version or of an unknown kind,
        or its header or arrays do not match the model layout: every header field is
        type-checked and every array's declared shape and dtype compared with what the saved
        configuration implies before anything is built; files whose arrays declare more than
        :data:`bayestensor.io.MAX_LOAD_BYTES` are refused.
    """
    kind, header, arrays = io.read(path)
    if kind not in KINDS:
        raise ValueError(f"{str(path)!r} holds an unknown kind of result {kind!r}")
    module, name = KINDS[kind]
    cls = getattr(importlib.import_module(module), name)
    try:
        return cls._from_record(header, arrays)
    except ValueError as err:
        raise ValueError(f"{str(path)!r} cannot be loaded: {err}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # a check missing: a bug
        raise ValueError(f"{str(path)!r} has a malformed {kind} header ({err!r})") from None


def prediction_frame(index: pd.Index, **columns: Any) -> pd.DataFrame:
    """A prediction table in the shared column order (:data:`PREDICTION_COLUMNS`)."""
    unknown = set(columns) - set(PREDICTION_COLUMNS)
    if unknown:
        raise ValueError(f"unknown prediction columns {sorted(unknown)}")
    ordered = {c: np.asarray(columns[c]) for c in PREDICTION_COLUMNS if c in columns}
    return pd.DataFrame(ordered, index=index)
