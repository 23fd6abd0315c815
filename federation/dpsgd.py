"""Local training on one node: DP-SGD with Opacus, or plain SGD for non-private baselines.

DP-SGD here is Opacus' ``PrivacyEngine.make_private`` over a ``DPDataLoader`` that samples
every row independently with probability ``sample_rate`` (Poisson sampling, what the accountant
assumes), per-sample gradients clipped to ``max_grad_norm`` and Gaussian noise of standard
deviation ``noise_multiplier * max_grad_norm`` added to every summed batch gradient.

Randomness. Everything that protects privacy comes from the operating system's CSPRNG and
nothing a job can set reaches it: before every DP-SGD step the sampling generator (which draws
the Poisson sample) and the noise generator (which draws the Gaussian noise) are re-seeded with
fresh bits from :func:`secrets.randbits` (``os.urandom``). Opacus' ``secure_mode`` needs the
``torchcsprng`` package, which has no build for this torch release, so the generators are
PyTorch's own, seeded per step from the CSPRNG; the noise is drawn the way Opacus' secure mode
draws it (the mean of four Gaussian draws, scaled, which resists the floating-point attacks on
the Gaussian sampler). Two runs of the same job therefore give different weights. A job's
``seed`` only fixes the initial weights, on the server. Non-private baselines (``dp=False``)
may seed their batch order.

Multi-class labels (K >= 3 classes, ``y`` holding class indices 0..K-1) train with
``CrossEntropyLoss`` on the model's K logits; binary labels (``y`` in {0, 1}) with
``BCEWithLogitsLoss`` on its single logit. Opacus computes per-sample gradients of either.

FedProx's proximal term ``mu/2 * ||w - w_global||^2`` does not depend on any record, so it is
applied as a separate, data-independent step after each DP step rather than through the loss
(Opacus only privatizes per-sample gradients; a parameter-only loss term would be dropped).
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import TensorDataset

from federation.errors import InvalidJobError


@dataclass(frozen=True)
class LocalTraining:
    """What one node's local training produced."""

    state_dict: dict[str, torch.Tensor]
    steps: int
    compute_s: float


def _clean_state(module: nn.Module) -> dict[str, torch.Tensor]:
    inner = getattr(module, "_module", module)
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def _proximal_step(
    params: list[nn.Parameter], anchor: list[torch.Tensor], lr: float, mu: float
) -> None:
    if mu <= 0:
        return
    with torch.no_grad():
        for p, a in zip(params, anchor, strict=True):
            p.sub_(lr * mu * (p - a))


def fresh_generator() -> torch.Generator:
    """A PyTorch generator seeded from the operating system's CSPRNG."""
    return torch.Generator().manual_seed(secrets.randbits(63))


def _reseed(generator: torch.Generator) -> None:
    generator.manual_seed(secrets.randbits(63))


def train_local(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    dp: bool,
    sample_rate: float,
    steps: int,
    noise_multiplier: float,
    max_grad_norm: float,
    learning_rate: float,
    proximal_mu: float = 0.0,
    seed: int | None = None,
    num_classes: int = 2,
) -> LocalTraining:
    """Run ``steps`` optimizer steps on (X, y) starting from ``model``'s current weights.

    With ``dp=True`` each step is a DP-SGD step on a Poisson sample of the rows, with sampling
    and noise from the CSPRNG (re-seeded every step); ``seed`` must then be None
    (:class:`InvalidJobError` otherwise). With ``dp=False``, a plain SGD step on a uniformly
    drawn batch of the same expected size; ``seed`` fixes the batch order (CSPRNG if None).
    """
    start = time.perf_counter()
    if dp and seed is not None:
        raise InvalidJobError(
            "DP-SGD draws its sampling and noise from the operating system's CSPRNG; they "
            "cannot be seeded. Drop the seed (it may only fix initial weights or the batch "
            "order of a non-private baseline)"
        )
    dataset = TensorDataset(torch.as_tensor(X, dtype=torch.float32), _targets(y, num_classes))
    anchor = [p.detach().clone() for p in model.parameters()]
    criterion = _criterion(num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    taken = 0
    if dp:
        sampling = fresh_generator()
        noise = fresh_generator()
        loader = DPDataLoader(dataset, sample_rate=sample_rate, generator=sampling)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            engine = PrivacyEngine(accountant="rdp")
            private_model, private_opt, private_loader = engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=noise_multiplier,
                max_grad_norm=max_grad_norm,
                poisson_sampling=False,  # the loader above already samples with sample_rate
                noise_generator=noise,
            )
        # Opacus' floating-point-safe Gaussian draw (what secure_mode uses), from ``noise``.
        private_opt.secure_mode = True
        params = [p for p in private_model.parameters() if p.requires_grad]
        while taken < steps:
            batches = iter(private_loader)
            for _ in range(len(private_loader)):
                _reseed(sampling)  # the Poisson sample of this step
                xb, yb = next(batches)
                private_opt.zero_grad(set_to_none=True)
                loss = criterion(private_model(xb), yb)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Full backward hook")
                    loss.backward()
                _reseed(noise)  # the Gaussian noise of this step
                private_opt.step()
                _proximal_step(params, anchor, learning_rate, proximal_mu)
                taken += 1
                if taken >= steps:
                    break
        state = _clean_state(private_model)
    else:
        generator = fresh_generator() if seed is None else torch.Generator().manual_seed(seed)
        batch = max(1, round(sample_rate * len(dataset)))
        params = [p for p in model.parameters() if p.requires_grad]
        while taken < steps:
            order = torch.randperm(len(dataset), generator=generator)
            for i in range(0, len(dataset), batch):
                xb, yb = dataset[order[i : i + batch]]
                optimizer.zero_grad(set_to_none=True)
                criterion(model(xb), yb).backward()
                optimizer.step()
                _proximal_step(params, anchor, learning_rate, proximal_mu)
                taken += 1
                if taken >= steps:
                    break
        state = _clean_state(model)
    return LocalTraining(state_dict=state, steps=taken, compute_s=time.perf_counter() - start)


def _targets(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """Binary labels as floats (BCE), class indices as integers (cross-entropy)."""
    if num_classes == 2:
        return torch.as_tensor(y, dtype=torch.float32)
    return torch.as_tensor(y, dtype=torch.long)


def _criterion(num_classes: int, reduction: str = "mean") -> nn.Module:
    if num_classes == 2:
        return nn.BCEWithLogitsLoss(reduction=reduction)
    return nn.CrossEntropyLoss(reduction=reduction)


def per_example_loss(
    model: nn.Module, X: np.ndarray, y: np.ndarray, num_classes: int = 2
) -> np.ndarray:
    """Each row's loss under ``model`` (nats): binary cross-entropy, or cross-entropy over K
    classes. Exact values; only a clipped, noised sum of them may leave a node."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(X, dtype=torch.float32))
        out = _criterion(num_classes, "none")(logits, _targets(y, num_classes)).numpy()
    model.train()
    return np.asarray(out, dtype=np.float64)


def predict_proba(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class for each row of ``X`` (binary model, shape
    ``(n,)``), or of each class (K-class model, shape ``(n, K)``, softmax)."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(X, dtype=torch.float32))
        probs = torch.sigmoid(logits) if logits.dim() == 1 else torch.softmax(logits, dim=-1)
        out = probs.numpy()
    model.train()
    return out


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model`` in place."""
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
