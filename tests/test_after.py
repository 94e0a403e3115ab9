"""The methods that came after the five papers: SCRUB, NegGrad+, SalUn, ℓ1-sparse and SSD. Each
forgets on a small model and keeps the rest, and does what its paper's equations say."""

import pytest
import torch
import torch.nn.functional as F
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit.fisher import diag_fisher
from unlearnkit.methods.l1_sparse import l1_norm
from unlearnkit.methods.salun import saliency_mask
from unlearnkit.methods.scrub import distill_kl

SETTINGS = {
    "scrub": dict(epochs=8, msteps=3, lr=0.05, forget_batch_size=32, batch_size=16),
    "neggrad_plus": dict(epochs=6, lr=0.05, alpha=0.9, batch_size=16),
    "salun": dict(epochs=4, lr=0.05, ratio=0.5, batch_size=16),
    "l1_sparse": dict(epochs=6, lr=0.05, alpha=0.05, batch_size=32),
    "ssd": dict(alpha=10.0, lam=1.0),
}
ACCESS = {"scrub": "forget+retain", "neggrad_plus": "forget+retain", "salun": "forget+retain",
          "l1_sparse": "retain", "ssd": "forget+retain"}  # fmt: skip


@pytest.fixture(scope="module")
def after(_trained_mlp, task0):
    before = state(_trained_mlp)
    out = {n: uk.get_method(n)(_trained_mlp, task0, seed=0, **hp) for n, hp in SETTINGS.items()}
    assert same_state(before, state(_trained_mlp))  # the input is never changed
    return out


def accs(model, task):
    return uk.accuracy(model, *task.forget_set()), uk.accuracy(model, *task.test_retain())


def test_registered_with_their_access_levels_and_full_presets():
    for name, access in ACCESS.items():
        fn = uk.get_method(name)
        assert fn.access == access and fn.paper and fn.record.color
        assert "full" in fn.record.presets and fn.record.presets["full"]
    colors = [f.record.color for f in uk.methods.REGISTRY.values() if f.record.color]
    assert len(colors) == len(set(colors)), "two methods share a plot colour"


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_forgets_the_class_and_keeps_the_rest(_trained_mlp, task0, after, name):
    f0, r0 = accs(_trained_mlp, task0)
    f, r = accs(after[name], task0)
    assert f0 == 100.0
    assert f <= 30.0, f"{name} kept {f:.1f}% of the forgotten class"
    assert r >= r0 - 15, f"{name} lost the retained classes ({r:.1f}% against {r0:.1f}%)"


def test_distillation_loss_is_temperature_scaled_kl():
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    assert distill_kl(t, t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    T = 2.0
    p_t = F.softmax(t / T, 1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / T, 1))).sum(1).mean() * T**2
    assert distill_kl(s, t, T).item() == pytest.approx(manual.item(), rel=1e-5)


def test_scrub_without_max_steps_stays_with_its_teacher(_trained_mlp, task0, after):
    hp = dict(SETTINGS["scrub"], msteps=0, alpha=1.0)
    kept = uk.methods.scrub(_trained_mlp, task0, seed=0, **hp)
    assert accs(kept, task0)[0] >= 90.0  # min-steps alone distil the teacher, class included
    assert kept.unlearn_info["max_step_epochs"] == 0 and after["scrub"].unlearn_info["max_step_epochs"] == 3


def test_neggrad_plus_weighs_its_two_terms(_trained_mlp, task0):
    only_retain = uk.methods.neggrad_plus(
        _trained_mlp, task0, seed=0, **dict(SETTINGS["neggrad_plus"], alpha=1.0)
    )
    assert accs(only_retain, task0)[0] >= 70.0  # alpha = 1: plain fine-tuning on D_r
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        uk.methods.neggrad_plus(_trained_mlp, task0, seed=0, alpha=1.5)


def test_saliency_mask_keeps_the_top_share_of_all_weights(_trained_mlp, task0):
    xf, yf = task0.forget_set()
    m = saliency_mask(_trained_mlp, xf, yf, 0.2)
    n = sum(v.numel() for v in m.values())
    assert sum(int(v.sum()) for v in m.values()) == pytest.approx(0.2 * n, rel=0.01)
    assert set(m) == {k for k, p in _trained_mlp.named_parameters()}  # one threshold for every tensor
    assert all(p.grad is None for p in _trained_mlp.parameters())  # no gradient left behind
    with pytest.raises(ValueError, match="above 0"):
        saliency_mask(_trained_mlp, xf, yf, 0.0)


def test_salun_moves_only_the_salient_weights(_trained_mlp, task0):
    out = uk.methods.salun(_trained_mlp, task0, seed=0, **dict(SETTINGS["salun"], decay_masked_only=True))
    mask = out.unlearn_info["mask"]
    before, after = dict(_trained_mlp.named_parameters()), dict(out.named_parameters())
    for name, m in mask.items():
        assert torch.equal(before[name][~m], after[name][~m]), name  # unmasked: untouched
    moved = sum(int((before[k][m] != after[k][m]).sum()) for k, m in mask.items())
    assert moved > 0.5 * sum(int(m.sum()) for m in mask.values())
    assert out.unlearn_info["mask_share"] == pytest.approx(0.5, abs=0.01)


def test_l1_sparse_shrinks_the_weights_more_than_plain_fine_tuning(_trained_mlp, task0):
    p = list(_trained_mlp.parameters())
    assert l1_norm(_trained_mlp).item() == pytest.approx(sum(x.abs().sum().item() for x in p), rel=1e-5)
    hp = dict(SETTINGS["l1_sparse"], weight_decay=0.0)
    plain = uk.methods.l1_sparse(_trained_mlp, task0, seed=0, **dict(hp, alpha=0.0))
    sparse = uk.methods.l1_sparse(_trained_mlp, task0, seed=0, **hp)
    assert l1_norm(sparse).item() < 0.95 * l1_norm(plain).item()


def test_ssd_dampens_exactly_the_selected_parameters(_trained_mlp, task0):
    out = uk.methods.ssd(_trained_mlp, task0, seed=0, alpha=10.0, lam=1.0)
    xf, yf = task0.forget_set()
    xr, yr = task0.retain_set()
    d = diag_fisher(_trained_mlp, torch.cat([xr, xf]), torch.cat([yr, yf]), kind="batch")
    f = diag_fisher(_trained_mlp, xf, yf, kind="batch")
    before, after = dict(_trained_mlp.named_parameters()), dict(out.named_parameters())
    for name, p0 in before.items():
        pick = f[name] > 10.0 * d[name]
        beta = torch.where(pick, (d[name] / f[name]).clamp(max=1.0), torch.ones_like(p0))
        torch.testing.assert_close(after[name], p0 * beta)
    assert 0 < out.unlearn_info["selected_share"] < 0.5
    with pytest.raises(ValueError, match="selection weighting"):
        uk.methods.ssd(_trained_mlp, task0, seed=0, alpha=0.0)
