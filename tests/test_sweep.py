"""``python -m unlearnkit bench`` (unlearnkit.sweep): runs land in the results file one by one,
a killed sweep resumes and loses nothing, bad arguments fail clearly, and Ray gives the same
table as the in-process engine."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import unlearnkit as uk
from unlearnkit import sweep as sw
from unlearnkit.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
# a tiny sweep: digits, an MLP, two cheap methods, one class, two seeds (2 × 3 runs)
SETTINGS = dict(model="mlp", model_kwargs={}, epochs=3, mia=False, relearn={})
ARGS = [
    "--profile",
    "smoke",
    "--task",
    "full-class",
    "--forget",
    "full-class=0",
    "--methods",
    "finetune,relabel",
    "--seeds",
    "0-1",
    "--model",
    "mlp",
    "--epochs",
    "3",
    "--no-mia",
    "--no-relearn",
    "--no-progress",
]
METRICS = ["train_forget", "train_retain", "test_forget", "test_retain"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One data folder (zoo included) and one uninterrupted sweep for the whole module."""
    root = tmp_path_factory.mktemp("sweep")
    old = {k: os.environ.get(k) for k in ("UNLEARNKIT_DATA", "UNLEARNKIT_PROGRESS", "UNLEARNKIT_DRY_RUN")}
    os.environ.update(UNLEARNKIT_DATA=str(root / "data"), UNLEARNKIT_PROGRESS="0")
    os.environ.pop("UNLEARNKIT_DRY_RUN", None)
    uk.profile("smoke", quiet=True, dry_run=False)
    seen = []
    orig = sw.append_rows

    def spy(path, rows):
        orig(path, rows)
        seen.append(len(sw.read_results(path)))

    sw.append_rows = spy
    try:
        whole = _sweep(root / "whole.csv")
    finally:
        sw.append_rows = orig
    yield root, whole, seen
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    uk.profiles.reset()


@pytest.fixture
def smoke(shared):
    uk.profile("smoke", quiet=True, dry_run=False)
    return shared[0]


def _table(df):
    df = df.sort_values(sw.KEYS).reset_index(drop=True)
    return df[sw.KEYS + METRICS + ["diverged"]]


def _sweep(out, **kw):
    return sw.sweep(
        ["finetune", "relabel"],
        "full-class",
        "0-1",
        out,
        forget={"full-class": ["0"]},
        progress=False,
        log=lambda m: None,
        **{**SETTINGS, **kw},
    )


def test_runs_land_one_by_one_and_resume_skips_them(shared):
    root, res, seen = shared
    assert seen == [2, 3, 4, 6, 7, 8]  # reference run: original + retrain rows
    assert len(res) == 8 and set(res["method"]) == {"original", "retrain", "finetune", "relabel"}
    assert (res["config"] == res["config"].iloc[0]).all()
    again = _sweep(root / "whole.csv")  # nothing left to do
    pd.testing.assert_frame_equal(_table(again), _table(res))
    tab = sw.ranking(res)["full-class"]
    assert tab.index[0] == "retrain" and {"access", "ToW", "time / retrain"} <= set(tab.columns)


def test_killed_sweep_resumes_and_loses_nothing(smoke, shared):
    full = shared[1]
    out = smoke / "killed.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "unlearnkit", "bench", *ARGS, "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(smoke / "killed.log", "w"),
    )
    try:
        t0 = time.time()
        while time.time() - t0 < 60 and p.poll() is None:
            if out.exists() and len(sw.read_results(out)) >= 3:  # the first method run landed
                break
            time.sleep(0.02)
        assert p.poll() is None, (smoke / "killed.log").read_text()[-2000:]
        p.kill()
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    partial = sw.read_results(out)
    assert 3 <= len(partial) < 8
    assert main(["bench", *ARGS, "--out", str(out)]) == 0
    resumed = sw.read_results(out)
    assert len(resumed) == 8 and not resumed.duplicated(sw.KEYS).any()
    pd.testing.assert_frame_equal(_table(resumed), _table(full))


def test_bad_arguments_fail_clearly(smoke, capsys):
    out = str(smoke / "bad.csv")
    with pytest.raises(sw.SweepError, match="Unknown method 'nope'"):
        sw.plan(["nope"], ["full-class"], [0])
    with pytest.raises(sw.SweepError, match="Unknown task 'everything'"):
        sw.plan(["jit"], ["everything"], [0])
    with pytest.raises(sw.SweepError, match="runs on full-class tasks only"):
        sw.plan(["unsir"], ["random"], [0])
    with pytest.raises(sw.SweepError, match="designed for instances"):
        sw.plan(["instance_unlearn"], ["full-class"], [0])
    with pytest.raises(sw.SweepError, match="reference"):
        sw.plan(["retrain"], ["full-class"], [0])
    assert [r.method for r in sw.plan(["unsir", "jit"], ["random"], [0], skip_inapplicable=True)] == [
        "reference",
        "jit",
    ]
    assert sw.parse_seeds("0-4") == [0, 1, 2, 3, 4] and sw.parse_seeds("0,2,5") == [0, 2, 5]
    with pytest.raises(sw.SweepError, match="seeds"):
        sw.parse_seeds("4-1")
    assert main(["bench", "--methods", "nope", "--out", out]) == 2
    assert "Unknown method 'nope'" in capsys.readouterr().err
    assert main(["bench", "--methods", "mnemonic", "--task", "sub-class", "--out", out]) == 2
    assert "full-class tasks only" in capsys.readouterr().err
    with pytest.raises(sw.SweepError, match=r"\.csv, \.jsonl or \.parquet"):
        _sweep(smoke / "r.txt")
    # a results file of another configuration is refused
    other = smoke / "other.csv"
    sw.append_rows(
        other,
        [{"task": "full-class", "forget": "0", "seed": 0, "method": "retrain", "config": "0123456789abcdef"}],
    )
    with pytest.raises(sw.SweepError, match="another configuration"):
        _sweep(other)
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--engine" in capsys.readouterr().out


def test_ray_gives_the_same_table(smoke, shared):
    pytest.importorskip("ray")
    remote = _sweep(smoke / "ray.csv", engine="ray", num_cpus=2)
    assert len(remote) == 8
    pd.testing.assert_frame_equal(_table(remote), _table(shared[1]))


def test_forget_quality_of_methods(smoke):
    cfg = sw.SweepConfig.from_profile("smoke", **SETTINGS)
    # mask_classifier takes no seed: the score passes one only to methods that take it
    tab, eps = sw.quality(["finetune", "mask_classifier"], "full-class", "0", n_models=2, cfg=cfg, sizes=(2,))
    assert list(tab.index) == ["retrain (other seeds)", "original", "finetune", "mask_classifier"]
    assert tab["F"].between(0, 1).all() and (tab["models"] == 2).all()
    assert tab.loc["mask_classifier", "train_forget"] == 0
    n = int((uk.load_dataset("digits").y_train == 0).sum())
    assert all(len(e) == n for e in eps.values())
    with pytest.raises(sw.SweepError, match="full-class tasks only"):
        sw.quality(["unsir"], "random", n_models=2, cfg=cfg)


def test_forget_quality_official_grouping_error_bar_and_cache(smoke):
    cfg = sw.SweepConfig.from_profile("smoke", **SETTINGS)
    kw = dict(n_models=3, cfg=cfg, sizes=(2, 3), grouping="one original", n_boot=3, examples=5, cache=True)
    t0 = time.perf_counter()
    tab, eps = sw.quality(["finetune"], "full-class", "0", **kw)
    # the time it reports is the jobs' and the scoring's, each counted once
    assert 0 < tab.attrs["seconds"] <= time.perf_counter() - t0
    assert not tab.attrs["cached"] and {"F std", "F lo", "F hi", "eps inf %"} <= set(tab.columns)
    assert (tab["examples"] == 5).all() and all(len(e) == 5 for e in eps.values())
    # the official grouping's original is one model three times: peaky, no points
    assert tab.loc["original", "F"] == 0 and tab.loc["original", "F std"] == 0
    again, eps_again = sw.quality(["finetune"], "full-class", "0", **kw)
    assert again.attrs["cached"] and again.equals(tab)
    assert all(np.array_equal(eps_again[k], eps[k]) for k in eps)
    # the caches hold tensors and plain values: they load without unpickling arbitrary objects
    import torch

    files = sorted(uk.active().zoo_root.glob("quality-*v2-smoke-*.pt"))
    assert len(files) >= 2 and all(torch.load(f, weights_only=True) for f in files)
    res, _ = sw.quality_jobs(["finetune"], "full-class", "0", 3, cfg, "one original", cache=True)
    assert isinstance(res[0]["finetune"]["conf"], np.ndarray)
    with pytest.raises(sw.SweepError, match="grouping"):
        sw.quality(["finetune"], "full-class", "0", n_models=2, cfg=cfg, grouping="nope")


def test_what_may_run_where():
    # the JiT paper runs boundary shrinking on sub-class and random forgetting; a random forget
    # set is a set of instances
    for t in ("full-class", "sub-class", "random"):
        assert sw.applicable("boundary_shrink", t) is None
    assert "designed for" in sw.applicable("boundary_shrink", "instances")
    assert sw.applicable("instance_unlearn", "random") is None
    assert sw.applicable("instance_unlearn", "instances") is None
    assert "designed for" in sw.applicable("instance_unlearn", "sub-class")
    assert "designed for" in sw.applicable("mnemonic_with_data", "random")


def test_presets_carry_the_digits_hyper_parameters_and_given_ones_win():
    cfg = sw.SweepConfig.from_profile("quick", hp={"relabel": {"lr": 0.5}})
    assert sw.hp_for(cfg, "relabel", "full-class") == {"lr": 0.5}
    # the presets come from each method's record: JiT's digits learning rate, not the paper's
    assert sw.hp_for(cfg, "jit", "random") == {"sigma": 0.01, "lr": 3e-5}
    assert sw.hp_for(sw.SweepConfig.from_profile("full"), "jit", "random") == {"sigma": 0.01, "lr": 3e-4}
    assert sw.hp_for(cfg, "jit", "full-class")["sigma"] == 0.5
    # NegGrad ascends for real where it has no retain term: 16 instances at batch 64 are one step
    # per epoch, so the instance preset runs 30 epochs (the default, 1 epoch, was one step)
    assert sw.hp_for(cfg, "neggrad", "random") == {"epochs": 10, "lr": 0.01}
    assert sw.hp_for(cfg, "neggrad", "instances")["epochs"] * -(-cfg.k // 64) >= 30
    assert sw.hp_for(sw.SweepConfig.from_profile("full"), "neggrad", "instances")["epochs"] >= 100
    assert sw.SweepConfig.from_profile("quick").fingerprint != cfg.fingerprint
    # smoke falls back to quick's preset, then shortens what its record says
    smoke = sw.SweepConfig.from_profile("smoke")
    assert sw.hp_for(smoke, "mask", "full-class") == {"ratio": 0.04, "finetune_epochs": 2}


def test_a_hyper_parameter_a_method_does_not_have_is_refused_before_any_run(tmp_path):
    with pytest.raises(sw.SweepError, match="relabel has no hyper-parameter 'lrr'.*accepts lr"):
        sw.SweepConfig.from_profile("quick", hp={"relabel": {"lrr": 0.5}})
    with pytest.raises(sw.SweepError, match="no hyper-parameter 'sigmaa'"):
        sw.SweepConfig.from_profile("quick", hp={"jit": {"random": {"sigmaa": 0.1}}})
    with pytest.raises(sw.SweepError, match="Unknown method 'jitt'"):
        sw.SweepConfig.from_profile("quick", hp={"jitt": {"lr": 0.1}})


# ----------------------------------------------------------------------------- the results file
# these sweeps run a stand-in for run_one: they test the file, not the numbers


@pytest.fixture
def fake_runs(monkeypatch, tmp_path):
    """``sw.run_one`` replaced by a stand-in that returns well-formed rows at once; the list of
    the run keys it was asked for."""
    from unlearnkit.fingerprint import run_code

    calls = []

    def run_one(cfg, r, progress=False):
        calls.append(r.key)
        names = ["original", "retrain"] if r.method == sw.REFERENCE else [r.method]
        return [
            {
                "task": r.task,
                "forget": str(r.forget),
                "seed": int(r.seed),
                "method": n,
                "access": sw.access_of(n),
                "train_forget": 1.0 + r.seed,
                "train_retain": 90.0,
                "test_forget": 2.0,
                "test_retain": 88.0,
                "seconds": 1.0,
                "diverged": False,
                "error": "",
                "config": cfg.fingerprint,
                "code": run_code(n),
            }
            for n in names
        ]

    monkeypatch.setattr(sw, "run_one", run_one)
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "data"))
    uk.profile("smoke", quiet=True, dry_run=False)
    yield calls
    uk.profiles.reset()


def _fake_sweep(out, methods=("finetune", "relabel"), log=None):
    return sw.sweep(
        list(methods),
        "full-class",
        "0-1",
        out,
        forget={"full-class": ["0"]},
        progress=False,
        log=log or (lambda m: None),
        **SETTINGS,
    )


def test_rows_carry_the_code_and_older_code_is_redone(fake_runs, tmp_path):
    from unlearnkit.fingerprint import run_code

    out = tmp_path / "r.csv"
    res = _fake_sweep(out)
    assert len(fake_runs) == 6 and len(res) == 8
    assert {m: c for m, c in zip(res["method"], res["code"])} == {
        m: run_code(m) for m in ("original", "retrain", "finetune", "relabel")
    }
    assert run_code("retrain") == run_code("original") != run_code("finetune") != run_code("relabel")
    # finetune's rows made by older code: a resume redoes those two runs only, and replaces them
    df = sw.read_results(out)
    df.loc[df["method"] == "finetune", "code"] = "0123456789abcdef"
    df.to_csv(out, index=False)
    fake_runs.clear()
    logs = []
    res = _fake_sweep(out, log=logs.append)
    assert sorted(fake_runs) == [("full-class", "0", 0, "finetune"), ("full-class", "0", 1, "finetune")]
    assert "2 of them made by older code: redone" in logs[0]
    again = sw.read_results(out)
    assert len(again) == 8 and not again.duplicated(sw.KEYS).any()
    assert (again["code"] == [run_code(m) for m in again["method"]]).all()
    # rows of older code outside a sweep are left out of its table, and the tables refuse them
    df = sw.read_results(out)
    df.loc[df["method"] == "relabel", "code"] = "0123456789abcdef"
    df.to_csv(out, index=False)
    fake_runs.clear()
    logs.clear()
    res = _fake_sweep(out, methods=["finetune"], log=logs.append)
    assert fake_runs == [] and set(res["method"]) == {"original", "retrain", "finetune"}
    assert sorted(k[-1] for k in res.attrs["stale"]) == ["relabel", "relabel"]
    assert any("2 rows made by older code (of relabel)" in m and "left out" in m for m in logs)
    with pytest.raises(sw.SweepError, match=r"older code \(of relabel\).*Run the same sweep again.*--out"):
        sw.ranking(sw.read_results(out))
    assert len(sw.current(sw.read_results(out))) == 6
    assert set(sw.ranking(res)["full-class"].index) == {"retrain", "original", "finetune"}


@pytest.mark.parametrize(
    "name,content",
    [
        ("notes.csv", b"hello"),
        ("results.csv", b"hello\n"),
        ("results.jsonl", b"hello\n"),
        ("results.parquet", b"hello"),
        ("other.csv", b"a,b\n1,2\n"),
    ],
)
def test_a_file_that_is_not_a_results_file_is_left_as_it_is(fake_runs, tmp_path, capsys, name, content):
    out = tmp_path / name
    out.write_bytes(content)
    assert main(["bench", *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} exists and is not a results file" in err and "left as it is" in err
    assert "another --out" in err and "another configuration" not in err
    assert out.read_bytes() == content and fake_runs == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == [name]  # no lock left


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_damaged_results_file_says_how_to_recover(fake_runs, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"r{suffix}"
    _fake_sweep(out)
    raw = out.read_bytes()
    cut = raw[: len(raw) - 25]  # the last row cut in its middle
    out.write_bytes(cut)
    with pytest.raises(sw.SweepError) as e:
        _fake_sweep(out)
    msg = str(e.value)
    assert f"{out} is damaged" in msg and "restore it from a backup" in msg and "move it away" in msg
    assert "fingerprint" not in msg and "another configuration" not in msg
    if suffix != ".parquet":
        assert "delete its last, partial line" in msg
    assert out.read_bytes() == cut and not sw.lock_path(out).exists()
    if suffix == ".csv":  # deleting the partial line recovers the rest
        out.write_bytes(cut[: cut.rstrip(b"\n").rfind(b"\n") + 1])
        assert len(sw.read_results(out)) == 7
        fake_runs.clear()
        assert len(_fake_sweep(out)) == 8 and len(fake_runs) == 1


def test_a_second_sweep_on_the_same_file_is_refused(fake_runs, tmp_path):
    out = tmp_path / "r.csv"
    _fake_sweep(out, methods=["finetune"])
    before = out.read_bytes()
    lock = sw.lock_path(out)
    # another process holds the lock, as a sweep running in another terminal does
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, str(os.getpid()).encode())\nprint('locked', flush=True)\ntime.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        fake_runs.clear()
        with pytest.raises(sw.SweepError) as e:
            _fake_sweep(out)
        msg = str(e.value)
        assert f"{out} is in use by another sweep" in msg and str(lock) in msg
        assert f"process {holder.pid}" in msg and "Wait for it to finish" in msg
        assert fake_runs == [] and out.read_bytes() == before
        with pytest.raises(sw.SweepError, match="in use by another sweep"):
            sw.append_rows(out, [{"task": "random", "forget": "-", "seed": 0, "method": "x", "config": "c"}])
        assert out.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the holder died and left its lock file behind: the next sweep takes it over
    assert lock.exists()
    res = _fake_sweep(out)
    assert len(res) == 8 and len(fake_runs) == 2 and not lock.exists()


def test_duplicates_are_never_appended_and_a_file_with_duplicates_reads(tmp_path):
    out = tmp_path / "r.csv"
    rows = [
        {
            "task": "full-class",
            "forget": "0",
            "seed": s,
            "method": "finetune",
            "train_forget": float(s),
            "config": "c",
            "code": "a",
        }
        for s in (0, 1)
    ]
    sw.append_rows(out, rows)
    before = out.read_bytes()
    sw.append_rows(out, rows)  # the same rows again: nothing changes
    sw.append_rows(out, rows + rows)
    assert out.read_bytes() == before and len(sw.read_results(out)) == 2
    # the same run made by other code replaces its row
    sw.append_rows(out, [{**rows[0], "train_forget": 5.0, "code": "b"}])
    df = sw.read_results(out)
    assert len(df) == 2 and df.set_index("seed").loc[0, ["train_forget", "code"]].tolist() == [5.0, "b"]
    # a file that holds duplicates anyway (e.g. edited by hand) reads: the last row of a run wins
    dup = pd.concat([pd.DataFrame(rows), pd.DataFrame(rows).assign(train_forget=[7.0, 8.0])])
    dup.to_csv(out, index=False)
    df = sw.read_results(out)
    assert len(df) == 2 and df["train_forget"].tolist() == [7.0, 8.0]


def test_the_code_of_a_row_follows_its_method_and_the_evaluation(monkeypatch):
    from unlearnkit import fingerprint as fp

    caches = (fp.training_code, fp.eval_code, fp.method_code, fp.run_code)
    names = ("finetune", "jit", "retrain")
    before = {m: fp.run_code(m) for m in names}
    real = fp._source

    def edited(target):
        def source(obj):  # the file of `target` as if someone had edited it
            hit = str(obj).endswith(target) or getattr(obj, "__name__", "").endswith(target)
            return real(obj) + ("\n# edited\n" if hit else "")

        return source

    try:
        for target, changed in (
            ("jit.py", {"jit"}),
            ("unlearnkit.metrics", set(names)),
            ("unlearnkit.training", set(names)),
        ):
            for c in caches:
                c.cache_clear()
            monkeypatch.setattr(fp, "_source", edited(target))
            after = {m: fp.run_code(m) for m in names}
            assert {m for m in names if after[m] != before[m]} == changed, target
    finally:
        monkeypatch.setattr(fp, "_source", real)
        for c in caches:
            c.cache_clear()
    assert {m: fp.run_code(m) for m in names} == before


def test_retrain_time_is_measured_in_the_same_run(smoke, monkeypatch):
    """The reference run's retrain seconds come from a retraining timed in that run, even when
    the zoo already holds the model (its recorded time may come from another day and load)."""
    import unlearnkit.zoo as zoo

    cfg = sw.SweepConfig.from_profile("smoke", **SETTINGS)
    run = sw.Run(task="full-class", forget="0", seed=0, method=sw.REFERENCE)
    sw.run_one(cfg, run)  # the zoo now holds both models
    calls = []
    real = zoo.train_or_load

    def spy(task, which="original", **kw):
        m = real(task, which, **kw)
        calls.append((which, kw.get("cache_dir") is not None, m.zoo_cached))
        return m

    monkeypatch.setattr(zoo, "train_or_load", spy)
    rows = {r["method"]: r for r in sw.run_one(cfg, run)}
    assert ("retrain", True, False) in calls, "a cached retrain model must be re-timed in this run"
    assert rows["retrain"]["seconds"] > 0


def test_the_command_line_refuses_an_unknown_hyper_parameter_before_any_run(tmp_path, capsys):
    from unlearnkit.__main__ import main

    out = tmp_path / "r.csv"
    rc = main(
        [
            "bench",
            "--methods",
            "relabel",
            "--out",
            str(out),
            "--profile",
            "smoke",
            "--hp",
            '{"relabel": {"lrr": 1}}',
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "relabel has no hyper-parameter 'lrr': it accepts lr" in err
    assert not out.exists() and not sw.lock_path(out).exists()
    uk.profiles.reset()


def test_a_run_without_progress_opens_no_progress_bar(smoke, monkeypatch, capsys):
    """The sweep shows one bar for all its runs; the loops inside a run (the zoo's, the method's)
    show none, even where bars are on (a notebook would otherwise get one widget per loop)."""
    from unlearnkit import fingerprint, profiles

    monkeypatch.setenv("UNLEARNKIT_PROGRESS", "1")
    cfg = sw.SweepConfig.from_profile("smoke", **SETTINGS)
    sw.run_one(cfg, sw.Run(task="full-class", forget="0", seed=0, method=sw.REFERENCE))
    task = sw.make_task(cfg, "full-class", "0", 0)
    original, _ = sw.prepare(task, dict(cfg.train_kwargs(), progress=False), 0)
    capsys.readouterr()
    uk.methods.neggrad(original, task, seed=0, epochs=1)  # outside a run: its bar shows
    assert "neggrad" in capsys.readouterr().err
    sw.run_one(cfg, sw.Run(task="full-class", forget="0", seed=0, method="neggrad"))
    assert "neggrad" not in capsys.readouterr().err
    assert profiles.progress_default()  # the switch ends with the run
    # the results' code covers the whole run recipe, the body and the retrain timing included
    recipe = fingerprint._functions(fingerprint._module("sweep.run"), fingerprint.RECIPE)
    assert "def _run(" in recipe and "def retrain_seconds(" in recipe


def test_paired_runs_give_each_seed_one_forget_item():
    from unlearnkit.sweep.config import plan

    runs = plan(
        ["finetune"], ["full-class", "random"], [0, 1], {"full-class": ["0", "3"]}, "smoke", paired=True
    )
    fc = [(r.forget, r.seed) for r in runs if r.task == "full-class" and r.method == "finetune"]
    assert fc == [("0", 0), ("3", 1)]
    assert sum(r.task == "random" and r.method == "finetune" for r in runs) == 2  # no items: every seed
    with pytest.raises(sw.SweepError, match="as many of each"):
        plan(["finetune"], ["full-class"], [0, 1, 2], {"full-class": ["0", "3"]}, "smoke", paired=True)
