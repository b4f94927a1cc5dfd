"""The shared fit loop (driver.py): steps, stopping, progress-bar counts."""

from bayestensor.driver import Step, iterate


def test_iterate_runs_until_stop_or_cap():
    seen = []

    def step(i, carry):
        seen.append(i)
        return Step(carry + i, stop=carry + i >= 6, postfix={"total": carry + i})

    carry, n, stopped = iterate(step, 0, 10, desc="t")
    assert (carry, n, stopped) == (6, 4, True) and seen == [0, 1, 2, 3]
    carry, n, stopped = iterate(lambda i, c: Step(c + 1), 0, 5, desc="t")
    assert (carry, n, stopped) == (5, 5, False)
    assert iterate(lambda i, c: Step(c + 1), 0, 0, desc="t") == (0, 0, False)


def test_progress_bar_counts_advance(monkeypatch):
    # a step may stand for several (a compiled chunk): the bar moves by `advance`
    import bayestensor.driver as driver

    log = {}

    class Bar:
        def __init__(self, total, desc, enabled):
            log.update(total=total, desc=desc, enabled=enabled, n=0, postfix=None)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            log["n"] += k

        def set_postfix(self, d):
            log["postfix"] = d

    monkeypatch.setattr(driver, "progress_bar", Bar)
    iterate(lambda i, c: Step(c, postfix={"r": 0.5}, advance=3), None, 4, desc="chunks", total=12)
    assert log == {
        "total": 12,
        "desc": "chunks",
        "enabled": False,
        "n": 12,
        "postfix": {"r": "0.5"},
    }
