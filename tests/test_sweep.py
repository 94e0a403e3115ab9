"""``python -m unlearnkit bench`` (unlearnkit.sweep): runs land in the results file one by one,
a killed sweep resumes and loses nothing, bad arguments fail clearly, and Ray gives the same
table as the in-process engine."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import unlearnkit as uk
from unlearnkit import sweep as sw
from unlearnkit.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
# a tiny sweep: digits, an MLP, two cheap methods, one class, two seeds (2 × 3 runs)
SETTINGS = dict(model="mlp", model_kwargs={}, epochs=3, mia=False, relearn={})
ARGS = ["--profile", "smoke", "--task", "full-class", "--forget", "full-class=0",
        "--methods", "finetune,relabel", "--seeds", "0-1", "--model", "mlp", "--epochs", "3",
        "--no-mia", "--no-relearn", "--no-progress"]
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
    return sw.sweep(["finetune", "relabel"], "full-class", "0-1", out, forget={"full-class": ["0"]},
                    progress=False, log=lambda m: None, **{**SETTINGS, **kw})


def test_runs_land_one_by_one_and_resume_skips_them(shared):
    root, res, seen = shared
    assert seen == [2, 3, 4, 6, 7, 8]             # reference run: original + retrain rows
    assert len(res) == 8 and set(res["method"]) == {"original", "retrain", "finetune", "relabel"}
    assert (res["config"] == res["config"].iloc[0]).all()
    again = _sweep(root / "whole.csv")             # nothing left to do
    pd.testing.assert_frame_equal(_table(again), _table(res))
    tab = sw.ranking(res)["full-class"]
    assert tab.index[0] == "retrain" and {"access", "ToW", "time / retrain"} <= set(tab.columns)


def test_killed_sweep_resumes_and_loses_nothing(smoke, shared):
    full = shared[1]
    out = smoke / "killed.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "unlearnkit", "bench", *ARGS, "--out", str(out)],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=open(smoke / "killed.log", "w"))
    try:
        t0 = time.time()
        while time.time() - t0 < 60 and p.poll() is None:
            if out.exists() and len(sw.read_results(out)) >= 3:   # the first method run landed
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
    assert [r.method for r in sw.plan(["unsir", "jit"], ["random"], [0], skip_inapplicable=True)] \
        == ["reference", "jit"]
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
    sw.append_rows(other, [{"task": "full-class", "forget": "0", "seed": 0, "method": "retrain",
                            "config": "0123456789abcdef"}])
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
    tab, eps = sw.quality(["finetune", "mask_classifier"], "full-class", "0", n_models=2, cfg=cfg,
                          sizes=(2,))
    assert list(tab.index) == ["retrain (other seeds)", "original", "finetune", "mask_classifier"]
    assert tab["F"].between(0, 1).all() and (tab["models"] == 2).all()
    assert tab.loc["mask_classifier", "train_forget"] == 0
    n = int((uk.load_dataset("digits").y_train == 0).sum())
    assert all(len(e) == n for e in eps.values())
    with pytest.raises(sw.SweepError, match="full-class tasks only"):
        sw.quality(["unsir"], "random", n_models=2, cfg=cfg)


def test_presets_carry_the_digits_hyper_parameters_and_given_ones_win():
    cfg = sw.SweepConfig.from_profile("quick", hp={"relabel": {"lr": 0.5}})
    assert sw.hp_for(cfg, "relabel", "full-class") == {"lr": 0.5}
    assert sw.hp_for(cfg, "jit", "random") == sw.DIGITS_HP["jit"]["random"]
    assert sw.hp_for(cfg, "neggrad", "random") == {}                  # full-class only
    assert sw.SweepConfig.from_profile("quick").fingerprint != cfg.fingerprint
