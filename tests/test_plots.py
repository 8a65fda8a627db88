import numpy as np

from qlearn import plots, stats


def test_learning_curves_draw_the_iqm_of_each_configuration(tmp_path):
    rng = np.random.default_rng(0)
    returns = rng.normal(size=(2, 5, 4))  # [H, S, T]
    fig = plots.learning_curves(np.arange(4), returns, ["a", "b"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), stats.iqm(returns[1].T))
    assert plots.save(fig, tmp_path / "sub" / "f.png").stat().st_size > 0


def test_sensitivity_draws_one_curve_per_group():
    finals = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # [G, V, S]
    fig = plots.sensitivity(np.array([1e-4, 1e-3, 1e-2]), finals, name="lr", groups=["x", "y"])
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["x", "y"]
    np.testing.assert_allclose(lines[0].get_ydata(), stats.iqm(finals[0]))
    assert fig.axes[0].get_xscale() == "log"


def test_heatmap_shows_the_iqm_of_each_cell_and_saves_a_pdf(tmp_path):
    finals = np.random.default_rng(0).normal(size=(2, 3, 8))  # [Y, X, S]
    finals[1, 2] = np.nan  # every run of one cell diverged
    fig = plots.heatmap(
        np.array([1e-4, 1e-3, 1e-2]), np.array([0.9, 0.99]), finals, x_name="lr", y_name="gamma"
    )
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(image[0, 1], stats.iqm(finals[0, 1]))
    assert np.ma.is_masked(image[1, 2]) or np.isnan(image[1, 2])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "diverged" in texts and len(texts) == 6
    png = plots.save(fig, tmp_path / "h.png", pdf=True)
    assert png.exists() and png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_steps_and_seconds_draws_each_method_against_both_axes_in_one_colour():
    rng = np.random.default_rng(0)
    dqn = ("DQN", np.arange(1, 5) * 10, np.arange(1, 5) * 2.0, rng.normal(size=(3, 4)))
    pqn = ("PQN", np.arange(1, 7) * 40, np.arange(1, 7) * 1.5, rng.normal(size=(3, 6)))
    fig = plots.steps_and_seconds([("CartPole", [dqn, pqn]), ("Breakout", [dqn, pqn])])
    assert len(fig.axes) == 4
    by_steps, by_time = fig.axes[2], fig.axes[3]  # second row
    (d_steps, p_steps), (d_time, p_time) = by_steps.get_lines(), by_time.get_lines()
    np.testing.assert_allclose(p_steps.get_xdata(), pqn[1])
    np.testing.assert_allclose(p_time.get_xdata(), pqn[2])
    np.testing.assert_allclose(p_time.get_ydata(), stats.iqm(pqn[3].T))  # over seeds
    assert d_steps.get_color() == d_time.get_color() != p_time.get_color()
    assert by_time.get_xlabel() == "wall-clock seconds"


def test_panels_draw_every_configuration_in_every_panel_in_one_colour():
    rng = np.random.default_rng(0)
    values = rng.uniform(1, 2, size=(2, 5, 4))  # [H, S, T]
    rows = [[("a", "ve", values), ("b", "J", values + 1)], [("c", "ve", values * 2)]]
    fig = plots.panels(np.arange(4), rows, ["x", "y"], log_y=("ve",))
    axes = np.asarray(fig.axes).reshape(2, 2)
    np.testing.assert_allclose(axes[0, 1].get_lines()[1].get_ydata(), stats.iqm(values[1].T) + 1)
    assert [ax.get_yscale() for ax in axes[:, 0]] == ["log", "log"]
    assert axes[0, 1].get_yscale() == "linear" and not axes[1, 1].get_lines()
    colours = [[line.get_color() for line in ax.get_lines()] for ax in (axes[0, 0], axes[1, 0])]
    assert colours[0] == colours[1]
    legend = axes[0, 0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["x", "y"]
