"""The README's quick start runs as written and its set-up commands are the ones CI uses."""

import re
from pathlib import Path

import jax
import pytest
from conftest import TOL

ROOT = Path(__file__).parents[1]


@pytest.mark.once  # as users run it, x64 off, in both passes: the float32 pass leaves it out
def test_quick_start_runs(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    namespace: dict = {}
    with jax.enable_x64(False):
        exec(compile(blocks[0], "README quick start", "exec"), namespace)
    # Dobson units; one year of ozone is very predictable
    assert namespace["rmse"] < TOL["readme_rmse"]
    assert "held-out RMSE" in capsys.readouterr().out


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(commands) == 2
    main_job, test_cmd = commands
    assert "bayestensor demo" in main_job
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd.strip() in [line.strip() for line in ci_lines]
