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
