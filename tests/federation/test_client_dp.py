"""Client-level DP (unit: a whole node): refused for small federations, clipping bounds each
node's influence, OpenDP noise of the stated scale, epsilon checked against dp-accounting."""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import rdp

from federation.accounting import MIN_CLIENT_DP_NODES, predict_cost
from federation.client_dp import (
    aggregate,
    client_level_cost,
    client_level_epsilon,
    client_noise_multiplier,
    clip_update,
    clipped_sum,
    sample_nodes,
)
from federation.errors import InvalidJobError
from federation.job import JobSpec


def _spec(nodes: int, **kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": ("x1", "x2"),
        "label": "y",
        "nodes": tuple(f"n{i}" for i in range(nodes)),
        "rounds": 50,
        "sample_rate": 0.05,
        "target_epsilon": 3.0,
        "client_dp": True,
        "client_noise_multiplier": 1.0,
        "client_sample_rate": 0.2,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_client_dp_is_refused_under_the_node_minimum() -> None:
    spec = _spec(MIN_CLIENT_DP_NODES - 1)
    with pytest.raises(InvalidJobError, match=f"at least {MIN_CLIENT_DP_NODES} nodes"):
        predict_cost(spec)
    with pytest.raises(InvalidJobError, match="protect whole"):
        client_level_cost(spec)
    # At the minimum it is accepted and reported apart from the per-dataset costs.
    ok = _spec(MIN_CLIENT_DP_NODES)
    assert set(predict_cost(ok)) == set(ok.nodes)
    cost = client_level_cost(ok)
    assert cost is not None and 0 < cost.epsilon < float("inf")
    # Record-level DP-SGD stays the default: no client-level cost unless asked for.
    plain = JobSpec(
        model="logreg", features=("x1",), label="y", nodes=("a", "b"), sample_rate=0.1,
        target_epsilon=1.0,
    )  # fmt: skip
    assert client_level_cost(plain) is None


def test_client_dp_needs_record_level_dp_and_exactly_one_noise_setting() -> None:
    with pytest.raises(ValueError, match="needs dp=True"):
        _spec(20, dp=False, target_epsilon=None)
    with pytest.raises(ValueError, match="exactly one of client_target_epsilon"):
        _spec(20, client_target_epsilon=2.0)
    with pytest.raises(ValueError, match="need client_dp=True"):
        _spec(20, client_dp=False)


def test_clipping_bounds_each_nodes_influence_on_the_aggregate() -> None:
    rng = np.random.default_rng(0)
    clip = 0.5
    glob = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    # Nodes whose updates are 1000 times the clipping norm, and one small update.
    big = [{k: v + rng.normal(size=v.shape) * 1000 for k, v in glob.items()} for _ in range(5)]
    small_update = {k: np.full(v.shape, 0.01) for k, v in glob.items()}
    small = {k: glob[k] + small_update[k] for k in glob}
    for node in big:
        clipped = clip_update({k: node[k] - glob[k] for k in glob}, clip)
        norm = np.sqrt(sum((v**2).sum() for v in clipped.values()))
        assert norm == pytest.approx(clip, rel=1e-9)
    # A small update is left as it is.
    kept = clip_update(small_update, clip)
    for k in glob:
        np.testing.assert_allclose(kept[k], small_update[k])
    total = clipped_sum(glob, [*big, small], clip)
    total_norm = np.sqrt(sum((v**2).sum() for v in total.values()))
    assert total_norm <= 6 * clip + 1e-9
    # Without clipping the sum would be thousands of times larger: the bound is not vacuous.
    raw = np.sqrt(sum(((sum(n[k] - glob[k] for n in big)) ** 2).sum() for k in glob))
    assert raw > 100 * total_norm
    # Removing one node changes the clipped sum by at most the clipping norm.
    without = clipped_sum(glob, big[1:] + [small], clip)
    diff = np.sqrt(sum(((total[k] - without[k]) ** 2).sum() for k in glob))
    assert diff <= clip + 1e-9


def test_aggregate_adds_noise_of_the_stated_scale_around_the_clipped_mean() -> None:
    rng = np.random.default_rng(1)
    clip, sigma, expected = 0.5, 2.0, 4.0
    glob = {"w": np.zeros((40, 50)), "b": np.zeros(50)}
    nodes = [{k: rng.normal(size=v.shape) for k, v in glob.items()} for _ in range(4)]
    out = aggregate(
        glob, nodes, clipping_norm=clip, noise_multiplier=sigma, expected_nodes=expected
    )
    mean = {k: v / expected for k, v in clipped_sum(glob, nodes, clip).items()}
    noise = np.concatenate([(out[k] - glob[k] - mean[k]).ravel() for k in glob])
    # Per coordinate: sigma * C / expected_nodes = 0.25, over 2050 coordinates.
    assert noise.std() == pytest.approx(sigma * clip / expected, rel=0.1)
    assert abs(noise.mean()) < 0.05


def test_poisson_node_sampling_rate() -> None:
    ids = list(range(20_000))
    picked = sample_nodes(ids, 0.1)
    assert set(picked) <= set(ids)
    assert len(picked) == pytest.approx(2000, rel=0.1)


def _dp_accounting_epsilon(sigma: float, q: float, rounds: int, delta: float) -> float:
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    acc = rdp.RdpAccountant(orders)
    event = dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma))
    acc.compose(dpa.SelfComposedDpEvent(event, rounds))
    return acc.get_epsilon(delta)


@pytest.mark.parametrize(
    ("sigma", "q", "rounds"), [(1.0, 0.2, 50), (0.8, 0.05, 200), (2.0, 1.0, 30)]
)
def test_client_level_epsilon_matches_dp_accounting(sigma: float, q: float, rounds: int) -> None:
    ours = client_level_epsilon(sigma, q, rounds, 1e-5)
    reference = _dp_accounting_epsilon(sigma, q, rounds, 1e-5)
    assert ours == pytest.approx(reference, rel=0.01)
    spec = _spec(25, client_noise_multiplier=sigma, client_sample_rate=q, rounds=rounds)
    cost = client_level_cost(spec)
    assert cost is not None and cost.epsilon == pytest.approx(reference, rel=0.01)
    # Fewer rounds released cost less.
    assert client_level_cost(spec, rounds // 2).epsilon < cost.epsilon  # type: ignore[union-attr]


def test_client_target_epsilon_is_calibrated_within_target() -> None:
    spec = _spec(30, client_noise_multiplier=None, client_target_epsilon=4.0)
    sigma = client_noise_multiplier(spec)
    eps = _dp_accounting_epsilon(sigma, spec.client_sample_rate, spec.rounds, spec.client_delta)
    assert eps <= 4.0 * 1.01
    assert eps >= 3.8  # calibrated tightly, not just any large noise
