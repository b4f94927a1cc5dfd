"""The float32 pass: after the float64 run, ``pytest`` runs the suite again with x64 off.

Users run JAX's default float32; the suite runs in float64 (``tests/conftest.py``). So that one
``pytest`` command (the one CI runs) checks both, the float64 run ends by starting a second
``pytest`` in a subprocess with ``BAYESTENSOR_TEST_X64=0``: the same arguments (files, ``-k``,
``-n``, ...), restricted to the tests **not** marked ``x64``. Those marked ``x64`` compare with
float64 references and run with 64-bit scoped on in the float32 pass too (see
``conftest._x64_marked``) — the same computation as in the float64 run — so they run once.
``nox -s tests_f32`` runs the whole suite in float32, ``x64`` tests included. Tests marked
``once`` do their work in processes of their own whose precision does not follow the suite's
(e.g. a child without x64), or in a precision they set themselves (the README's quick start and
the demo, run with x64 off as users run them): the float32 pass would repeat them exactly, so it
leaves them out.

The two runs share one persistent compilation cache, a temporary folder removed at the end
(:func:`shared_compile_cache`): the library's solvers compute in float64 whatever the global
flag, so most programs of the float32 run were compiled by the float64 run already (measured:
the float32 run took 180 s with the shared cache, against about 460 s of its tests' share of a
float32 run without one).

``--float32-pass`` turns it on (the default, through ``addopts`` in ``pyproject.toml``);
``--no-float32-pass`` runs the float64 run alone. The float32 run's output follows the float64
run's; its result is the last line of the summary, and a failure there fails the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

#: Environment variables: the precision of a run (read by conftest) and the shared cache folder.
ENV_X64 = "BAYESTENSOR_TEST_X64"
ENV_CACHE = "BAYESTENSOR_TEST_COMPILE_CACHE"


def shared_compile_cache(jax, create: bool = False) -> None:
    """Point JAX's persistent compilation cache at the run's shared temporary folder.

    The pytest controller makes the folder (``create=True``, from ``pytest_configure``) and
    hands it to the xdist workers, the float32 run and the tests' own child processes through
    the environment; they call this on importing conftest. A process that imports conftest
    outside a pytest run with no folder handed to it gets none. Every program is cached (no
    minimum compile time or size), with bayestensor's traced programs beside them, as a user's
    default cache keeps them.
    """
    folder = os.environ.get(ENV_CACHE)
    if not folder and create:
        folder = tempfile.mkdtemp(prefix="bayestensor-test-xla-")
        os.environ[ENV_CACHE] = folder
        os.environ[ENV_CACHE + "_OWNER"] = str(os.getpid())
    if not folder:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def addoption(parser) -> None:
    group = parser.getgroup("bayestensor")
    group.addoption(
        "--float32-pass",
        action="store_true",
        default=False,
        help="after the float64 run, run the tests not marked x64 again with x64 off",
    )
    group.addoption(
        "--no-float32-pass",
        action="store_false",
        dest="float32_pass",
        help="run the float64 run alone",
    )


def _wanted(config, x64: bool) -> bool:
    """Whether this process is a float64 controller that should start the float32 run."""
    return (
        x64
        and config.getoption("float32_pass")
        and not hasattr(config, "workerinput")  # an xdist worker
        and not config.getoption("collectonly")
        and not config.getoption("help", False)
    )


def _args(config) -> list[str]:
    """The invocation's arguments with the x64- and once-marked tests deselected."""
    args = list(config.invocation_params.args)
    marks = config.getoption("markexpr") or ""
    keep = f"({marks}) and not x64 and not once" if marks.strip() else "not x64 and not once"
    return [*args, "-m", keep, "--no-float32-pass", "-p", "no:cacheprovider"]


def run(session, x64: bool) -> None:
    """Run the float32 pass after the float64 run (see the module doc); record its result."""
    config = session.config
    if not _wanted(config, x64):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "float32 pass: the tests not marked x64, with x64 off")
    env = dict(os.environ, **{ENV_X64: "0"})
    cmd = [sys.executable, "-m", "pytest", *_args(config)]
    rc = subprocess.run(cmd, env=env, cwd=config.invocation_params.dir, check=False).returncode
    config._float32_pass_rc = rc
    # 0: passed; 5: nothing collected (every selected test is marked x64)
    if rc not in (0, 5) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary(reporter, config) -> None:
    """One line at the end: how the float32 pass ended."""
    rc = getattr(config, "_float32_pass_rc", None)
    if rc is None:
        return
    ok = rc in (0, 5)
    reporter.write_sep(
        "=",
        "float32 pass " + ("passed" if ok else f"FAILED (exit code {rc}; its output is above)"),
        green=ok,
        red=not ok,
    )


def cleanup(config) -> None:
    """Remove the shared cache folder, in the process that made it."""
    folder = os.environ.get(ENV_CACHE)
    if folder and os.environ.get(ENV_CACHE + "_OWNER") == str(os.getpid()):
        shutil.rmtree(folder, ignore_errors=True)
