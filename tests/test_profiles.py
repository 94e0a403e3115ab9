"""Profiles, the provenance line, device choice and seeding."""

import random
import warnings

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.profiles import PROFILES, profile_name

CONFIGS = {
    "smoke": {"epochs": 1, "dataset": "digits"},
    "quick": {"epochs": 5, "dataset": "digits"},
    "full": {"epochs": 200, "dataset": "cifar10", "model": "resnet18"},
}


@pytest.mark.parametrize("name", PROFILES)
def test_profile_from_the_environment(monkeypatch, name, capsys):
    monkeypatch.setenv("UNLEARNKIT_PROFILE", f" {name.upper()} ")
    monkeypatch.setenv("UNLEARNKIT_DEVICE", "cpu")
    with pytest.warns(uk.GPUWarning, match="needs a GPU") if name == "full" else warnings.catch_warnings():
        if name != "full":
            warnings.simplefilter("error", uk.GPUWarning)  # only the full profile warns on a CPU
        p = uk.profile(seed=7)
    assert p.name == name and p.device == torch.device("cpu") and p.seed == 7 and not p.on_gpu
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"profile={name} | device=cpu") and f"torch {torch.__version__}" in line
    assert "seed=7" in line and f"unlearnkit {uk.__version__}" in line
    assert vars(uk.config(CONFIGS)) == CONFIGS[name]


def test_default_profile_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("UNLEARNKIT_PROFILE", raising=False)
    assert profile_name() == ("full" if torch.cuda.is_available() else "quick")
    assert profile_name("smoke") == "smoke"  # the argument wins


def test_quiet_profile_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNKIT_DEVICE", "cpu")
    uk.profile("smoke", quiet=True)
    assert capsys.readouterr().out == ""


def test_config_picks_the_named_profile():
    cfg = uk.config(CONFIGS, name="full")
    assert cfg.epochs == 200 and cfg.model == "resnet18"
    assert uk.config(CONFIGS, name="smoke").dataset == "digits"


def test_settings_table_shows_all_three():
    t = uk.settings_table(CONFIGS)
    assert list(t.columns) == ["smoke", "quick", "full"]
    assert list(t.index) == ["epochs", "dataset", "model"]
    assert t.loc["epochs", "full"] == "200" and t.loc["model", "smoke"] == ""


def test_seeding_makes_every_generator_repeat():
    draws = []
    for _ in range(2):
        uk.set_seed(123)
        draws.append((random.random(), np.random.rand(), torch.rand(3).tolist()))
    assert draws[0] == draws[1]
    uk.set_seed(124)
    assert torch.rand(3).tolist() != draws[0][2]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_device_choice(monkeypatch):
    monkeypatch.delenv("UNLEARNKIT_DEVICE", raising=False)
    assert uk.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert uk.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("UNLEARNKIT_DEVICE", "cpu")
    assert uk.get_device() == torch.device("cpu")
