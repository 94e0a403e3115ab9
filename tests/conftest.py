"""Shared fixtures for the unit tests: small data, one tiny trained model per session,
temporary cache folders, and no network.

Everything here runs on the CPU in a fraction of a second per test; the session-wide
fixtures are built once per pytest-xdist worker.
"""

import os
import socket

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("UNLEARNKIT_PROGRESS", "0")
# tiny models on a shared 2-core box (and two xdist workers): one intra-op thread per process is
# many times faster than threads spinning against each other. The notebooks nbval runs start
# their own kernels, which inherit the environment: give them the same share of the cores.
torch.set_num_threads(1)
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

import unlearnkit as uk  # noqa: E402

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- isolation


@pytest.fixture(scope="session", autouse=True)
def _session_data_root(tmp_path_factory):
    """Datasets and checkpoints written by tests go to a temporary folder, never to ``data/``."""
    old = os.environ.get("UNLEARNKIT_DATA")
    os.environ["UNLEARNKIT_DATA"] = str(tmp_path_factory.mktemp("unlearnkit-data"))
    yield
    if old is None:
        os.environ.pop("UNLEARNKIT_DATA", None)
    else:
        os.environ["UNLEARNKIT_DATA"] = old


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # unix sockets
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    return host in ("localhost", "127.0.0.1", "::1", "") or str(host).startswith("127.")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach another machine fails at once (tests must never download)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(real):
        def connect(self, address):
            if not _is_local(address):
                raise OSError(f"network access is disabled in the tests (tried {address!r})")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(
        socket,
        "create_connection",
        lambda address, *a, **k: (_ for _ in ()).throw(
            OSError(f"network access is disabled in the tests (tried {address!r})")
        ),
    )


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """An empty data/cache folder of its own, set as ``UNLEARNKIT_DATA``."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("UNLEARNKIT_DATA", str(root))
    return root


# ----------------------------------------------------------------------------- data and models


@pytest.fixture(scope="session")
def digits():
    """300 training and 100 test digits (stratified), on the CPU."""
    return uk.load_dataset("digits", device="cpu", n_train=300, n_test=100)


@pytest.fixture(scope="session")
def task0(digits):
    """Forget class 0 of the small digits set."""
    return uk.forget_classes(digits, [0])


def tiny_mlp(data, seed=0, hidden=(32,)):
    uk.set_seed(seed)
    return uk.build_model("mlp", data, hidden=hidden, device=CPU)


@pytest.fixture(scope="session")
def _trained_mlp(digits):
    m = tiny_mlp(digits)
    uk.fit(m, digits.x_train, digits.y_train, epochs=15, lr=0.1, batch_size=32, progress=False, seed=0)
    return m


@pytest.fixture
def trained_mlp(_trained_mlp):
    """A copy of the session's tiny MLP trained on all of ``digits`` (tests may change it)."""
    return uk.clone(_trained_mlp)


def state(model):
    """A detached copy of the model's state, to check that nothing changed it."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
