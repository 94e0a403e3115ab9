"""The shared tools: benchmark runner, figures, adversarial examples, the book runner and the CLI."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit import attacks, book, plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- bench


def test_timed_returns_result_and_seconds():
    out, s = uk.timed(lambda a, b=0: a + b, 2, b=3)
    assert out == 5 and 0 <= s < 1


def test_run_methods_table(trained_mlp, task0):
    before = state(trained_mlp)
    methods = {
        "finetune": lambda m, t: uk.methods.finetune(m, t, epochs=1),
        "random_labels": lambda m, t: uk.methods.random_labels(m, t, epochs=1, lr=0.05),
    }
    trained_mlp.zoo_info = {"train_seconds": 12.5}
    df, models = uk.run_methods(
        methods,
        trained_mlp,
        task0,
        extra_models={"original": trained_mlp},
        reference="original",
        verbose=False,
    )
    assert list(df.index) == ["original", "finetune", "random_labels"]
    assert set(models) == set(df.index) and models["original"] is trained_mlp
    assert df.loc["original", "seconds"] == 12.5  # training time of a zoo model
    assert (df.loc[["finetune", "random_labels"], "seconds"] > 0).all()
    assert df.loc["original", "JS_to_original"] == pytest.approx(0.0, abs=1e-7)
    assert same_state(before, state(trained_mlp))
    r = uk.format_table(df, ["test_retain", "seconds"], digits=1)
    assert list(r.columns) == ["test_retain", "seconds"] and r.loc["original", "seconds"] == "12.5"


def test_run_methods_prints_timings(trained_mlp, task0, capsys):
    uk.run_methods(
        {"finetune": lambda m, t: uk.methods.finetune(m, t, epochs=1)}, trained_mlp, task0, mia=False
    )
    assert "finetune:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- attacks


def test_fgsm_moves_by_eps_and_raises_the_loss(trained_mlp, digits):
    x, y = digits.x_test[:40], digits.y_test[:40]
    trained_mlp.train()
    adv = attacks.fgsm(trained_mlp, x, y, eps=0.1)
    assert trained_mlp.training  # mode restored
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    loss = lambda z: F.cross_entropy(uk.predict(trained_mlp, z), y).item()  # noqa: E731
    assert loss(adv) > loss(x)
    toward = attacks.fgsm(trained_mlp, x, torch.zeros_like(y), eps=0.1, targeted=True)
    assert F.cross_entropy(uk.predict(trained_mlp, toward), torch.zeros_like(y)) < F.cross_entropy(
        uk.predict(trained_mlp, x), torch.zeros_like(y)
    )


def test_pgd_l2_stays_in_the_ball_and_reaches_the_target(trained_mlp, digits):
    x = digits.x_test[:20]
    target = torch.full((20,), 3)
    g = torch.Generator().manual_seed(0)
    adv = attacks.pgd_l2(trained_mlp, x, target, eps=2.0, step=0.2, iters=30, generator=g)
    assert ((adv - x).flatten(1).norm(dim=1) <= 2.0 + 1e-4).all() and adv.min() >= 0 and adv.max() <= 1
    hit = (uk.predict(trained_mlp, adv).argmax(1) == 3).float().mean()
    before = (uk.predict(trained_mlp, x).argmax(1) == 3).float().mean()
    assert hit > before and hit >= 0.5
    again = attacks.pgd_l2(
        trained_mlp, x, target, eps=2.0, step=0.2, iters=30, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(adv, again)


# ----------------------------------------------------------------------------- plots


def test_plot_functions_draw(trained_mlp, task0):
    plots.setup()
    toy = uk.make_toy("moons", n_train=40, n_test=10)
    uk.set_seed(0)
    m2 = uk.build_model("mlp", toy, hidden=(8,), device="cpu")
    ax = plots.decision_boundary(
        m2, toy.x_train, toy.y_train, n=30, title="moons", highlight=toy.x_train[0], label="original"
    )
    assert ax.get_title() == "moons" and ax.get_xlim() == (-3, 3)
    xx, yy, p = plots.grid_predictions(m2, n=10)
    assert xx.shape == (10, 10) and p.shape == (10, 10, 2) and np.allclose(p.sum(-1), 1, atol=1e-5)
    ax = plots.histograms({"forget": torch.rand(30), "test": np.random.rand(20)}, xlabel="loss")
    assert ax.get_xlabel() == "loss" and len(ax.patches) > 0
    df = uk.evaluate({"original": trained_mlp, "retrain": trained_mlp}, task0, mia=False)
    ax = plots.metric_bars(df, columns=("test_retain", "test_forget", "not_a_column"))
    assert len(ax.patches) == 2 * len(df)
    ax = plots.runtime_bars({"retrain": 10.0, "jit": 0.1})
    assert ax.get_xscale() == "log" and len(ax.patches) == 2
    ax = plots.heatmap(
        pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["a", "b"], columns=["c", "d"]), title="sweep"
    )
    assert ax.get_title() == "sweep"
    fig = plots.image_grid(task0.data.x_train[:10], labels=list(range(10)), ncols=4)
    assert len(fig.axes) == 12 and fig.axes[0].get_title() == "0"


def test_colors():
    assert plots.color_for("retrain") == uk.get_method("retrain").record.color == "#2ca02c"
    assert plots.color_for("JiT (sigma=0.5)") == uk.get_method("jit").record.color
    assert plots.color_for("original") == plots.COLORS["original"]
    import matplotlib.colors as mc

    plots.setup()  # seaborn's palette holds RGB tuples
    c = plots.color_for("something new", 1)
    assert (
        isinstance(c, str)
        and c.startswith("#")
        and mc.to_rgb(c)
        == pytest.approx(mc.to_rgb(plt.rcParams["axes.prop_cycle"].by_key()["color"][1]), abs=1 / 255)
    )
    assert plots.color_for("x", 0) != plots.color_for("y", 1)


# ----------------------------------------------------------------------------- the book runner


def write_book(root, chapters=("book/01_a", "book/02_b")):
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: t\n")
    lines = ["format: jb-book", "root: book/intro", "chapters:"] + [f"- file: {c}" for c in chapters]
    (root / "_toc.yml").write_text("\n".join(lines) + "\n")
    for c in chapters:
        (root / f"{c}.ipynb").write_text("{}")
    (root / "book" / "intro.md").write_text("# intro\n")


def test_chapters_follow_the_toc(tmp_path):
    write_book(tmp_path, ("book/02_b", "book/01_a", "book/03_missing"))
    (tmp_path / "book" / "03_missing.ipynb").unlink()
    assert [p.name for p in book.chapters(tmp_path)] == ["02_b.ipynb", "01_a.ipynb"]


def test_book_main_executes_copies_not_the_committed_notebooks(tmp_path, monkeypatch):
    write_book(tmp_path)
    executed, built = [], []
    monkeypatch.setattr(book, "execute", lambda nb, timeout=None: executed.append(nb) or 0.0)
    monkeypatch.setattr(book, "build", lambda src, out: built.append((src, out)))
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "data"))
    book.main(["--root", str(tmp_path), "--only", "02"])
    run = tmp_path / "_build" / "run"
    assert executed == [run / "book" / "02_b.ipynb"]
    assert built == [(run, tmp_path)]
    assert (run / "_toc.yml").exists() and (run / "book" / "intro.md").exists()
    built.clear()
    book.main(["--root", str(tmp_path), "--render-only"])
    assert built == [(tmp_path, tmp_path)]


def test_book_main_without_a_toc(tmp_path):
    with pytest.raises(SystemExit, match="has no _toc.yml"):
        book.main(["--root", str(tmp_path)])


def test_book_build_command(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(book.subprocess, "run", lambda cmd, check: seen.append(cmd))
    book.build(tmp_path / "src", tmp_path / "out")
    cmd = seen[0]
    assert "build" in cmd and str(tmp_path / "src") in cmd and "-W" in cmd
    assert cmd[cmd.index("--path-output") + 1] == str(tmp_path / "out")


# ----------------------------------------------------------------------------- python -m unlearnkit


def test_command_line_runs_a_baseline(data_root, capsys, monkeypatch):
    from unlearnkit.__main__ import main

    monkeypatch.setenv("UNLEARNKIT_DEVICE", "cpu")
    main(["--profile", "smoke", "--epochs", "1", "--methods", "finetune", "--forget-class", "3"])
    out = capsys.readouterr().out
    assert out.startswith("profile=smoke")
    for word in ("original", "retrain", "finetune", "test_forget"):
        assert word in out
    assert len(list((data_root / "zoo").glob("digits-mlp-*.pt"))) == 2
