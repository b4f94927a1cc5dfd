"""Plot helpers draw exactly the data they are given (checked on the artists' data)."""

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest
from conftest import TOL
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import bayestensor as bt
from bayestensor import plotting
from bayestensor.data import Mode
from bayestensor.modes import TimeScale

Z95 = 1.959963984540054


def _factors(rng):
    """A continuous mode (coordinates deliberately unsorted) and a categorical one."""
    x = np.array([3.0, 0.5, 2.0, 1.0])
    rows = []
    for r in range(2):
        for xi in x:
            rows.append(("t", xi, r, np.sin(xi + r), 0.1 + 0.05 * xi))
        for c in ["b", "a", "c"]:
            rows.append(("g", c, r, rng.normal(), rng.uniform(0.1, 0.3)))
    return pd.DataFrame(rows, columns=["mode", "coordinate", "component", "mean", "sd"])


def test_factor_lines_and_bands_equal_the_input(rng):
    fac = _factors(rng)
    fig = plotting.plot_factors(fac)
    assert isinstance(fig, Figure)
    ax_t, ax_g = fig.axes[:2]
    assert ax_t.get_title() == "mode 't'" and ax_g.get_title() == "mode 'g'"
    for r, line in enumerate(ax_t.get_lines()):
        part = fac[(fac["mode"] == "t") & (fac["component"] == r)].sort_values("coordinate")
        np.testing.assert_array_equal(line.get_xdata(), part["coordinate"].to_numpy(float))
        np.testing.assert_array_equal(line.get_ydata(), part["mean"].to_numpy())
    bands = [c for c in ax_t.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    part = fac[(fac["mode"] == "t") & (fac["component"] == 0)].sort_values("coordinate")
    verts = bands[0].get_paths()[0].vertices
    upper = part["mean"] + Z95 * part["sd"]
    lower = part["mean"] - Z95 * part["sd"]
    for y in np.concatenate([upper, lower]):
        assert np.isclose(verts[:, 1], y).any()
    assert verts[:, 1].max() == pytest.approx(upper.max())
    assert verts[:, 1].min() == pytest.approx(lower.min())


def test_categorical_factors_are_points_with_error_bars(rng):
    fac = _factors(rng)
    ax_g = plotting.plot_factors(fac, level=0.9).axes[1]
    assert [t.get_text() for t in ax_g.get_xticklabels()] == ["b", "a", "c"]
    part = fac[(fac["mode"] == "g") & (fac["component"] == 1)]
    points = ax_g.containers[1]  # errorbar container of component 1
    np.testing.assert_array_equal(points.lines[0].get_ydata(), part["mean"].to_numpy())
    np.testing.assert_allclose(points.lines[0].get_xdata(), np.arange(3) + 0.12)
    segs = points.lines[2][0].get_segments()
    half = np.array([abs(s[1, 1] - s[0, 1]) / 2 for s in segs])
    np.testing.assert_allclose(half, 1.6448536269514722 * part["sd"].to_numpy())


def test_kinds_override_numeric_detection(rng):
    fac = _factors(rng)
    ax_t = plotting.plot_factors(fac, kinds={"t": "categorical"}).axes[0]
    assert not [c for c in ax_t.collections if isinstance(c, PolyCollection)]
    assert len(ax_t.containers) == 2


def test_factor_errors(rng):
    with pytest.raises(ValueError, match="missing columns"):
        plotting.plot_factors(pd.DataFrame({"mode": ["a"]}))
    with pytest.raises(ValueError, match="level"):
        plotting.plot_factors(_factors(rng), level=1.5)


def test_observed_vs_predicted(rng):
    y = rng.normal(size=30)
    mean = y + 0.3 * rng.normal(size=30)
    lo, hi = mean - 0.5, mean + 0.7
    fig = plotting.plot_observed_vs_predicted(y, mean, lo, hi, label="t")
    ax = fig.axes[0]
    cont = ax.containers[0]
    np.testing.assert_array_equal(cont.lines[0].get_xdata(), y)
    np.testing.assert_array_equal(cont.lines[0].get_ydata(), mean)
    segs = cont.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0, 1] for s in segs], lo)
    np.testing.assert_allclose([s[1, 1] for s in segs], hi)
    rmse = np.sqrt(np.mean((y - mean) ** 2))
    cover = np.mean((lo <= y) & (y <= hi))
    assert ax.get_title() == f"RMSE {rmse:.4g}, interval coverage {cover:.3f}"
    assert ax.get_xlabel() == "observed t"
    with pytest.raises(ValueError, match="both lower and upper"):
        plotting.plot_observed_vs_predicted(y, mean, lo)
    with pytest.raises(ValueError, match="one shape"):
        plotting.plot_observed_vs_predicted(y, mean[:-1])


class _Linear:
    """A stand-in fit whose prediction is a known function: mean = 2 lon − lat + 10 month."""

    modes = (
        Mode("lat", "continuous", np.array([-10.0, 0.0, 30.0])),
        Mode("lon", "continuous", np.array([-100.0, -60.0])),
        Mode("month", "continuous", np.arange(1.0, 13.0)),
    )

    def __init__(self):
        self.calls = []

    def predict(self, df):
        self.calls.append(df.copy())
        mean = 2 * df["lon"] - df["lat"] + 10 * df["month"]
        sd_f = 0.01 * df["lat"].abs() + 0.001 * df["lon"].abs()
        return pd.DataFrame({"mean": mean, "sd": sd_f + 1, "sd_f": sd_f}, index=df.index)


def test_prediction_map_evaluates_the_model_on_the_grid():
    fake = _Linear()
    fig = plotting.plot_prediction_map(fake, x="lon", y="lat", fixed={"month": 7}, n=5)
    (df,) = fake.calls
    assert list(df.columns) == ["lat", "lon", "month"] and (df["month"] == 7).all()
    xs, ys = np.linspace(-100, -60, 5), np.linspace(-10, 30, 5)
    meshes = [c for ax in fig.axes[:2] for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 2
    mean, sd = (np.asarray(m.get_array()).reshape(5, 5) for m in meshes)
    np.testing.assert_allclose(mean, 2 * xs[None, :] - ys[:, None] + 70)  # rows = lat
    sd_f = 0.01 * np.abs(ys)[:, None] + 0.001 * np.abs(xs)[None, :]
    np.testing.assert_allclose(sd, sd_f)  # the default sd panel: the latent f's
    assert "month = 7" in fig.axes[0].get_title()
    sd_y = plotting.plot_prediction_map(fake, x="lon", y="lat", fixed={"month": 7}, n=5, sd="y")
    np.testing.assert_allclose(np.asarray(sd_y.axes[1].collections[0].get_array()), sd_f + 1)
    fitted = plotting.plot_prediction_map(fake, x="lon", y="lat", fixed={"month": 7})
    lon, lat = fake.modes[1].values, fake.modes[0].values  # default: the training coordinates
    np.testing.assert_allclose(
        np.asarray(fitted.axes[0].collections[0].get_array()).reshape(3, 2),
        2 * lon[None, :] - lat[:, None] + 70,
    )
    with pytest.raises(ValueError, match="sd must be one of"):
        plotting.plot_prediction_map(fake, x="lon", y="lat", fixed={"month": 7}, sd="z")


def test_prediction_map_colour_bars_and_axes_are_labelled():
    fake = _Linear()
    fake.value = "ozone"
    fig = plotting.plot_prediction_map(
        fake, x="lon", y="lat", fixed={"month": 7}, n=3, units={"ozone": "DU", "lat": "°N"}
    )
    mean_ax, sd_ax = fig.axes[:2]
    labels = [
        ax.collections[0].colorbar.ax.get_ylabel() for ax in (mean_ax, sd_ax)
    ]  # the colour bars' own axes
    assert labels == ["ozone: mean (DU)", "ozone: sd of f (DU)"]
    assert mean_ax.get_ylabel() == "lat (°N)" and mean_ax.get_xlabel() == "lon"
    heat = plotting.plot_heatmap(np.eye(2), cbar_label="share")
    assert heat.axes[0].get_images()[0].colorbar.ax.get_ylabel() == "share"


def test_prediction_map_explicit_grid_and_errors():
    fake = _Linear()
    fig = plotting.plot_prediction_map(
        fake, x="month", y="lon", fixed={"lat": 0.0}, x_values=[1, 2, 3], y_values=[-90, -70]
    )
    mean = np.asarray(fig.axes[0].collections[0].get_array()).reshape(2, 3)
    np.testing.assert_allclose(mean, 2 * np.array([[-90], [-70]]) + 10 * np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"fixed must give a value for \['month'\]"):
        plotting.plot_prediction_map(fake, x="lon", y="lat", fixed={})
    with pytest.raises(ValueError, match="'depth' is not a mode"):
        plotting.plot_prediction_map(fake, x="depth", y="lat", fixed={"month": 1})
    with pytest.raises(ValueError, match="different modes"):
        plotting.plot_prediction_map(fake, x="lat", y="lat", fixed={"month": 1})


def test_heatmap_shows_the_matrix(rng):
    A = rng.gamma(1.0, size=(4, 3))
    fig = plotting.plot_heatmap(A, row_labels=list("wxyz"), col_labels=["c0", "c1", "c2"])
    image = next(a for a in fig.axes[0].get_images() if isinstance(a, AxesImage))
    np.testing.assert_array_equal(image.get_array(), A)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list("wxyz")
    bare = plotting.plot_heatmap(A)  # unlabelled rows and columns: whole-number ticks
    bare.canvas.draw()
    for ticks in (bare.axes[0].get_xticks(), bare.axes[0].get_yticks()):
        np.testing.assert_array_equal(ticks, np.round(ticks))
    with pytest.raises(ValueError, match="2-D"):
        plotting.plot_heatmap(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="row_labels must have 4 entries"):
        plotting.plot_heatmap(A, row_labels=["a"])


def test_heatmaps_one_panel_per_matrix(rng):
    mats = {"origin": rng.uniform(size=(3, 2)), "dest": rng.uniform(size=(5, 2)), "core": np.eye(2)}
    fig = plotting.plot_heatmaps(mats, ncols=2, row_labels={"origin": ["EWR", "JFK", "LGA"]})
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_images()]
    assert [ax.get_title() for ax in visible] == list(mats)
    for ax, A in zip(visible, mats.values(), strict=True):
        np.testing.assert_array_equal(ax.get_images()[0].get_array(), A)
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_heatmaps({})


def test_pde_solution_1d():
    x = np.linspace(0, 1, 50)
    exact = np.sin(6 * x)
    u = exact + 1e-3 * x
    fig = plotting.plot_pde_solution(x, u, exact, title="demo")
    ax_u, ax_e = fig.axes
    lines = {ln.get_label(): ln for ln in ax_u.get_lines()}
    np.testing.assert_array_equal(lines["solution"].get_ydata(), u)
    np.testing.assert_array_equal(lines["exact"].get_ydata(), exact)
    np.testing.assert_allclose(ax_e.get_lines()[0].get_ydata(), np.abs(u - exact))
    assert ax_e.get_yscale() == "log"
    with pytest.raises(ValueError, match="one shape"):
        plotting.plot_pde_solution(x, u[:-1], exact)


def test_pde_solution_2d():
    x, y = np.linspace(0, 1, 6), np.linspace(0, 2, 4)
    exact = np.sin(x)[:, None] * np.cos(y)[None, :]
    u = exact + 0.01 * x[:, None]
    fig = plotting.plot_pde_solution(x, u, exact, y=y)
    meshes = [ax.collections[0] for ax in fig.axes[:3]]  # then the colour bars
    for mesh, want in zip(meshes, (u, exact, np.abs(u - exact)), strict=True):
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(4, 6), want.T)
    with pytest.raises(ValueError, match=r"\(len\(x\), len\(y\)\)"):
        plotting.plot_pde_solution(x, u.T, exact.T, y=y)


def test_figures_save_without_pyplot(tmp_path, rng):
    path = tmp_path / "f.png"
    plotting.plot_heatmap(rng.uniform(size=(2, 2))).savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _dense_shares(U, W):
    """Reference: the mean square over the full grid of each part f^(k,r), normalised."""
    K = len(U)
    letters = "abcdefgh"[:K]
    spec = ",".join(f"{'ijklmnop'[k]}{letters[k]}" for k in range(K))
    out = []
    for k in range(K):
        energy = []
        for r in range(W.shape[k]):
            Wr = np.zeros_like(W)
            index = [slice(None)] * K
            index[k] = r
            Wr[tuple(index)] = W[tuple(index)]
            f = np.einsum(f"{letters},{spec}->{'ijklmnop'[:K]}", Wr, *U)
            energy.append(np.mean(f**2))
        out.append(np.array(energy) / np.sum(energy))
    return out


def _planted(rng):
    """Three modes; in mode 0, component 2 carries almost all of f (a large core slice)."""
    U = [rng.normal(size=(n, R)) for n, R in ((7, 4), (5, 3), (6, 2))]
    W = rng.normal(size=(4, 3, 2))
    W[2] = 4.0 * rng.normal(size=(3, 2))
    W[0] *= 0.05  # component 0 nearly off: a minor one
    return U, W


def test_tucker_shares_equal_the_dense_energies(rng):
    U, W = _planted(rng)
    shares = plotting.tucker_shares(U, W)
    for got, want in zip(shares, _dense_shares(U, W), strict=True):
        np.testing.assert_allclose(got, want, rtol=TOL["shares_vs_dense"])
        assert got.sum() == pytest.approx(1.0)
    assert np.argmax(shares[0]) == 2 and shares[0][2] > 0.7 and shares[0][0] < 0.01
    # invariant to moving a scale between a factor column and its core slice
    U2 = [u.copy() for u in U]
    W2 = W.copy()
    U2[1][:, 0] *= 5.0
    W2[:, 0] /= 5.0
    np.testing.assert_allclose(plotting.tucker_shares(U2, W2)[1], shares[1], rtol=1e-12)
    with pytest.raises(ValueError, match="core shape"):
        plotting.tucker_shares(U, W[:3])


def _long(U, names):
    """Long factor frame (mode, coordinate, component, mean, sd) of factor matrices."""
    rows = []
    for name, u in zip(names, U, strict=True):
        for i, row in enumerate(u):
            for r, v in enumerate(row):
                rows.append((name, float(i), r, v, 0.1))
    return pd.DataFrame(rows, columns=["mode", "coordinate", "component", "mean", "sd"])


def test_components_drawn_in_order_of_share_minor_ones_faded(rng):
    U, W = _planted(rng)
    names = ["a", "b", "c"]
    reference = _dense_shares(U, W)
    shares = dict(zip(names, plotting.tucker_shares(U, W), strict=True))
    one = plotting.plot_factors(_long(U, names), shares=shares, minor=0.01).axes[0]
    faded = [line.get_alpha() is not None and line.get_alpha() < 1 for line in one.get_lines()]
    order = list(np.argsort(-reference[0]))
    assert [int(ln.get_label().split(":")[0][4:]) for ln in one.get_lines()] == order
    assert faded == [reference[0][r] < 0.01 for r in order]
    assert len([c for c in one.collections if isinstance(c, PolyCollection)]) == sum(
        not f for f in faded
    )  # bands for the major components only
    fig = plotting.plot_factors(_long(U, names), shares=shares, minor=0.01, per_panel=2)
    ax = fig.axes[0]  # mode a: panels of two major components, then the minor panel
    major = [r for r in np.argsort(-reference[0]) if reference[0][r] >= 0.01]
    drawn = [int(line.get_label().split(":")[0][4:]) for line in ax.get_lines()]
    assert drawn == major[:2] and drawn[0] == 2
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == len(drawn)
    minor_ax = next(a for a in fig.axes if a.get_visible() and "minor" in a.get_title())
    small = [f"r = {r}" for r in np.argsort(-reference[0]) if reference[0][r] < 0.01]
    assert [ln.get_label().split(":")[0] for ln in minor_ax.get_lines()] == small
    assert small[-1] == "r = 0"  # the planted near-zero component, smallest share
    assert not [c for c in minor_ax.collections if isinstance(c, PolyCollection)]  # no bands
    part = _long(U, names).query("mode == 'a' and component == 0")
    np.testing.assert_array_equal(minor_ax.get_lines()[-1].get_ydata(), part["mean"])


def test_many_components_become_small_multiples(rng):
    U = [rng.normal(size=(6, 10))]
    fac = _long(U, ["t"])
    fig = plotting.plot_factors(fac, shares={"t": np.full(10, 0.1)}, per_panel=4)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert [len(ax.get_lines()) for ax in panels] == [4, 4, 2]
    assert panels[1].get_title() == "mode 't': largest shares 5–8"
    with pytest.raises(ValueError, match="one entry per component"):
        plotting.plot_factors(fac, shares={"t": [0.5, 0.5]})
    share = np.array([0.5, 0.3, 0.14] + [0.0075] * 8)[:10]
    fig = plotting.plot_factors(fac, shares={"t": share / share.sum()}, per_panel=4)
    minor_ax = next(a for a in fig.axes if "minor" in a.get_title())
    assert len(minor_ax.get_lines()) == 7  # too many to name: grey, one legend entry
    assert len(minor_ax.get_legend().get_texts()) == 1


@pytest.mark.parametrize("tz", [None, "America/New_York"])
def test_datetime_factors_on_a_date_axis(rng, tz):
    times = pd.date_range("2013-01-01", periods=5, freq="D", tz=tz)
    rows = [("when", t, r, rng.normal(), 0.1) for t in times[::-1] for r in range(2)]
    fac = pd.DataFrame(rows, columns=["mode", "coordinate", "component", "mean", "sd"])
    fig = plotting.plot_factors(fac, kinds={"when": "continuous"})
    ax = fig.axes[0]
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    utc = times if tz is None else times.tz_convert("UTC").tz_localize(None)
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), mdates.date2num(utc.to_pydatetime()))
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert any("Jan" in t or "2013" in t for t in ticks), ticks


class _Dated:
    """A stand-in fit with a datetime mode: mean = days since 2013-01-01 + lat."""

    value = "temp"
    origin = np.datetime64("2013-01-01T00:00:00", "s")
    modes = (
        Mode("lat", "continuous", np.array([0.0, 10.0])),
        Mode(
            "when",
            "continuous",
            np.array([0.0, 2.0, 5.0]),
            TimeScale("datetime", "D", "s", int(origin.astype(np.int64)), tz="America/New_York"),
        ),
    )

    def predict(self, df):
        when = pd.DatetimeIndex(df["when"])
        assert when.tz is not None  # the model's times, not floats
        days = (when.tz_convert("UTC").tz_localize(None) - pd.Timestamp(self.origin)).days
        mean = np.asarray(days, float) + df["lat"].to_numpy()
        return pd.DataFrame({"mean": mean, "sd": 1.0, "sd_f": 0.1}, index=df.index)


def test_map_of_a_datetime_mode_has_date_ticks():
    fake = _Dated()
    fig = plotting.plot_prediction_map(fake, x="when", y="lat", fixed={}, n=6)
    ax = fig.axes[0]
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    days = np.linspace(0.0, 5.0, 6)
    mean = np.asarray(ax.collections[0].get_array()).reshape(6, 6)
    np.testing.assert_allclose(mean, days[None, :] + np.linspace(0, 10, 6)[:, None])
    corners = ax.collections[0].get_coordinates()[0, :, 0]  # cell edges around the 6 days
    centres = mdates.date2num(fake.origin) + days
    assert np.all((corners[:-1] < centres) & (centres < corners[1:]))
    assert ax.get_xlabel() == "when (America/New_York)"
    fig.canvas.draw()
    assert any("Jan" in t.get_text() for t in ax.get_xticklabels())


@pytest.fixture(scope="module")
def ozone_by_date():
    """A small FunBaT fit of ozone at one longitude, the month as a date (a datetime mode)."""
    df = bt.datasets.load("ozone")
    df = df[(df["lon"] == np.unique(df["lon"])[10]) & (df["month"] <= 12)].copy()
    df["date"] = pd.Timestamp("1995-01-01") + pd.to_timedelta(30.5 * (df["month"] - 1), "D")
    return bt.fit(df, coords=["lat", "date"], value="ozone", rank=2, max_sweeps=3, progress=False)


@pytest.mark.slow  # a fit and predict_grid compile: ~30 s on the loaded 2-core machine
def test_fitted_map_and_factors(ozone_by_date):
    """The map's default sd panel is predict_grid's sd_f; a date mode gets date ticks; the
    factor panels follow component_shares."""
    res = ozone_by_date
    lat, date = (res.modes[k].coordinates() for k in range(2))
    grid = res.predict_grid()
    fig = plotting.plot_prediction_map(
        res, x="date", y="lat", fixed={}, x_values=date, y_values=lat
    )
    mean_ax, sd_ax = fig.axes[:2]
    for ax, name in ((mean_ax, "mean"), (sd_ax, "sd_f")):
        want = grid[name].transpose("lat", "date").to_numpy()
        got = np.asarray(ax.collections[0].get_array()).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=TOL["map_vs_predict_grid"])
    assert sd_ax.collections[0].colorbar.ax.get_ylabel() == "ozone: sd of f"
    assert isinstance(mean_ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    fac = res.plot_factors()
    date_ax = next(a for a in fac.axes if a.get_title().startswith("mode 'date'"))
    assert isinstance(date_ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    shares = plotting.component_shares(res)
    means = [res.estimator.factor_moments(k)[0] for k in range(2)]
    np.testing.assert_allclose(
        shares["lat"], plotting.tucker_shares(means, res.core)[0], rtol=1e-12
    )
    for name, ax in zip(["lat", "date"], fac.axes, strict=False):
        drawn = [int(line.get_label().split(":")[0][4:]) for line in ax.get_lines()]
        assert drawn == list(np.argsort(-shares[name], kind="stable"))[: len(drawn)]
