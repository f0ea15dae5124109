"""Dueling Bandit Gradient Descent: the perturbation's distribution, the step towards the
winner, probabilistic interleaving and its credit assignment."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

from recloop.agents.dbgd import (  # noqa: E402
    EXPLOIT,
    EXPLORE,
    Interleaving,
    Twins,
    credit,
    interleave,
    move_towards,
    perturbed_copy,
    rank_probabilities,
)
from recloop.agents.networks import mlp  # noqa: E402


def test_the_perturbation_is_uniform_within_alpha_of_each_weight():
    net = torch.nn.Linear(200, 100)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.copy_(torch.linspace(-3, 3, 100))
    before = [p.clone() for p in net.parameters()]
    explore = perturbed_copy(net, alpha=0.1, generator=torch.Generator().manual_seed(0))
    for p, b in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, b)  # the served network is untouched
    delta = (explore.weight - net.weight).detach()  # alpha * U(-1, 1) * 2
    assert delta.abs().max() <= 0.2 + 1e-6
    assert float(delta.mean()) == pytest.approx(0.0, abs=0.005)
    assert float(delta.var()) == pytest.approx(0.2**2 / 3, rel=0.03)  # var of U(-a, a) = a^2/3
    ratio = ((explore.bias - net.bias) / net.bias).detach()
    assert ratio.abs().max() <= 0.1 + 1e-6  # each weight moves by at most alpha of itself
    again = perturbed_copy(net, alpha=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.weight, explore.weight)  # seeded


def test_the_winner_pulls_the_network_eta_of_the_way():
    net, explore = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w, w_explore = net.weight.detach().clone(), explore.weight.detach().clone()
    move_towards(net, explore, eta=0.05)
    torch.testing.assert_close(net.weight, w + 0.05 * (w_explore - w))
    move_towards(net, explore, eta=1.0)
    torch.testing.assert_close(net.weight, w_explore)


def test_interleaving_shows_each_candidate_once_and_draws_lists_fairly():
    rng = np.random.default_rng(0)
    a, b = list(range(10)), list(reversed(range(10)))
    sources = []
    tops = 0
    for _ in range(4000):
        out = interleave(a, b, k=5, rng=rng)
        assert len(out.items) == 5 and len(set(out.items)) == 5
        assert set(out.items) <= set(a)
        sources.extend(out.source)
        first = a if out.source[0] == EXPLOIT else b
        tops += out.items[0] == first[0]
    assert np.mean(sources) == pytest.approx(0.5, abs=0.02)  # a fair coin per slot
    # the first slot takes its list's top item with probability 1 / sum(1/r^3)
    assert tops / 4000 == pytest.approx(rank_probabilities(10, 3.0)[0], abs=0.02)
    with pytest.raises(ValueError, match="same candidates"):
        interleave([1, 2], [1, 3], k=2, rng=rng)


def test_interleaving_draws_exactly_what_generator_choice_would():
    """The fast draw (a cached CDF) is ``rng.choice(n, p=rank_probabilities(n, tau))``
    draw for draw: same seed, same lists."""

    def reference(exploit, explore, k, rng, tau):
        lists, shown, source = [list(exploit), list(explore)], [], []
        for _ in range(min(k, len(exploit))):
            which = int(rng.integers(2))
            remaining = [i for i in lists[which] if i not in shown]
            p = rank_probabilities(len(remaining), tau)
            shown.append(remaining[int(rng.choice(len(remaining), p=p))])
            source.append(which)
        return shown, source

    a = list(range(30))
    b = [int(i) for i in np.random.default_rng(9).permutation(30)]
    fast, slow = np.random.default_rng(3), np.random.default_rng(3)
    for tau in (3.0, 0.5, 1.0) * 200:
        out = interleave(a, b, k=6, rng=fast, tau=tau)
        assert (out.items, out.source) == reference(a, b, 6, slow, tau)


def test_twins_perturb_each_weight_by_its_own_draw_and_score_with_both_networks_at_once():
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.add_module("head", mlp([6, 8, 8, 1]))
    twins = Twins(net)
    state = torch.Generator().manual_seed(5).get_state()
    explore = twins.perturb(0.1, torch.Generator().set_state(state))
    # by hand: one U(0, 1) per weight, in parameter order, W~ = W * (1 + 0.1 * (2u - 1))
    weights = list(net.parameters())
    u = torch.rand(sum(w.numel() for w in weights), generator=torch.Generator().set_state(state))
    offset = 0
    for w_twin, w in zip(explore.parameters(), weights, strict=True):
        draw = u[offset : offset + w.numel()].view_as(w)
        offset += w.numel()
        torch.testing.assert_close(w_twin, (w * (1 + 0.1 * (2 * draw - 1))).detach())
        assert not torch.equal(w_twin, w)  # moved
    again = perturbed_copy(net, 0.1, torch.Generator().set_state(state))
    for w_again, w_twin in zip(again.parameters(), explore.parameters(), strict=True):
        torch.testing.assert_close(w_again, w_twin, rtol=0, atol=0)
    x = torch.randn(11, 6)
    both = twins.forward(net.head, "head", x)
    with torch.no_grad():
        torch.testing.assert_close(both[0], net.head(x))
        torch.testing.assert_close(both[1], explore.head(x))
    # the exploration module is a view of the buffer: the next perturbation rewrites it
    before = [w.clone() for w in explore.parameters()]
    assert twins.perturb(0.1, torch.Generator().manual_seed(6)) is explore
    assert not any(torch.equal(b, w) for b, w in zip(before, explore.parameters(), strict=True))
    # and W's own step towards it lands where move_towards puts it
    target = [
        w + 0.5 * (e - w) for w, e in zip(net.parameters(), explore.parameters(), strict=True)
    ]
    move_towards(net, explore, eta=0.5)
    for w, t in zip(net.parameters(), target, strict=True):
        torch.testing.assert_close(w, t)


def test_credit_goes_to_the_list_whose_items_were_clicked():
    shown = Interleaving(items=[4, 7, 1, 9], source=[EXPLOIT, EXPLORE, EXPLORE, EXPLOIT])
    assert credit(shown, [0, 1, 0, 0]) == EXPLORE
    assert credit(shown, [1, 1, 1, 0]) == EXPLORE  # 2 against 1
    assert credit(shown, [1, 0, 0, 1]) == EXPLOIT
    assert credit(shown, [1, 1, 0, 0]) == EXPLOIT  # a tie keeps the current network
    assert credit(shown, [0, 0, 0, 0]) == EXPLOIT
    with pytest.raises(ValueError, match="one click value"):
        credit(shown, [1, 0])


def test_clicks_that_ignore_the_source_favour_neither_list():
    """Unbiasedness of the comparison: a user who clicks regardless of which ranker placed
    the item makes each list win equally often."""
    rng = np.random.default_rng(1)
    a = list(range(8))
    b = [3, 1, 7, 0, 5, 2, 6, 4]
    wins = {EXPLOIT: 0, EXPLORE: 0}
    for _ in range(6000):
        out = interleave(a, b, k=4, rng=rng)
        clicks = rng.random(4) < 0.3
        won = np.bincount(out.source, weights=clicks, minlength=2)
        if won[0] != won[1]:
            wins[credit(out, clicks.tolist())] += 1
    assert wins[EXPLORE] / (wins[EXPLORE] + wins[EXPLOIT]) == pytest.approx(0.5, abs=0.03)
