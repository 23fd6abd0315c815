"""The approved model zoo: the only model code a job may run on a department's data.

A job names one of :data:`APPROVED_MODELS` and gives hyperparameters; the department can read
this module to see exactly what will run on its rows. Every model takes one float tensor ``X``
whose categorical columns hold integer codes (``0 .. cardinality-1``) and returns one logit per
row for a binary label (shape ``(n,)``), or one logit per class for a label with K >= 3
classes (shape ``(n, K)``, softmax over the classes). All layers are supported by Opacus'
per-sample gradients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from federation.errors import InvalidJobError

APPROVED_MODELS: tuple[str, ...] = ("logreg", "mlp", "tab_embed")

_ALLOWED_PARAMS: dict[str, dict[str, tuple[int, int]]] = {
    "logreg": {},
    "mlp": {"hidden": (1, 512), "layers": (1, 4)},
    "tab_embed": {"hidden": (1, 512), "embedding_dim": (1, 32)},
}


class _Inputs(nn.Module):
    """Splits ``X`` into numeric columns and one-hot encoded categorical columns."""

    def __init__(self, n_features: int, categorical: Mapping[int, int]) -> None:
        super().__init__()
        self.numeric_idx = [i for i in range(n_features) if i not in categorical]
        self.cat_idx = sorted(categorical)
        self.cards = [categorical[i] for i in self.cat_idx]
        self.out_dim = len(self.numeric_idx) + sum(self.cards)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, self.numeric_idx]]
        for i, card in zip(self.cat_idx, self.cards, strict=True):
            codes = x[:, i].long().clamp(0, card - 1)
            parts.append(nn.functional.one_hot(codes, card).to(x.dtype))
        return torch.cat(parts, dim=1)


def _shape(logits: torch.Tensor) -> torch.Tensor:
    """One logit per row for a binary model, ``(n, K)`` logits for K classes."""
    return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


def output_width(num_classes: int) -> int:
    """The model's outputs for ``num_classes`` classes: 1 logit when binary, else one each.

    >>> output_width(2), output_width(5)
    (1, 5)
    """
    if num_classes < 2:
        raise InvalidJobError(f"a classifier needs at least two classes, got {num_classes}")
    return 1 if num_classes == 2 else num_classes


class LogisticRegression(nn.Module):
    """Logistic regression on numeric columns plus one-hot categorical columns."""

    def __init__(self, n_features: int, categorical: Mapping[int, int], outputs: int = 1) -> None:
        super().__init__()
        self.inputs = _Inputs(n_features, categorical)
        self.linear = nn.Linear(self.inputs.out_dim, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.linear(self.inputs(x))
        return _shape(logits)


class TabularMLP(nn.Module):
    """A ReLU multilayer perceptron on numeric plus one-hot categorical columns."""

    def __init__(
        self,
        n_features: int,
        categorical: Mapping[int, int],
        hidden: int = 32,
        layers: int = 2,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        self.inputs = _Inputs(n_features, categorical)
        blocks: list[nn.Module] = []
        width = self.inputs.out_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, outputs))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.body(self.inputs(x))
        return _shape(logits)


class TabularEmbeddingNet(nn.Module):
    """Learned embeddings for categorical columns (industry, district, education code ...)
    concatenated with numeric columns, then one hidden ReLU layer.

    Suited to government registers where high-cardinality codes carry most of the signal.
    """

    def __init__(
        self,
        n_features: int,
        categorical: Mapping[int, int],
        hidden: int = 32,
        embedding_dim: int = 4,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        self.numeric_idx = [i for i in range(n_features) if i not in categorical]
        self.cat_idx = sorted(categorical)
        self.cards = [categorical[i] for i in self.cat_idx]
        dims = [min(embedding_dim, card) for card in self.cards]
        self.embeddings = nn.ModuleList(
            [nn.Embedding(card, dim) for card, dim in zip(self.cards, dims, strict=True)]
        )
        width = len(self.numeric_idx) + sum(dims)
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, self.numeric_idx]]
        for i, card, emb in zip(self.cat_idx, self.cards, self.embeddings, strict=True):
            parts.append(emb(x[:, i].long().clamp(0, card - 1)))
        logits: torch.Tensor = self.body(torch.cat(parts, dim=1))
        return _shape(logits)


def validate_model_params(name: str, params: Mapping[str, int]) -> None:
    """Raise :class:`InvalidJobError` unless ``name`` is approved and ``params`` are allowed.

    >>> validate_model_params("mlp", {"hidden": 16})
    """
    if name not in APPROVED_MODELS:
        raise InvalidJobError(
            f"model {name!r} is not in the approved zoo; choose one of {APPROVED_MODELS}"
        )
    allowed = _ALLOWED_PARAMS[name]
    for key, value in params.items():
        if key not in allowed:
            raise InvalidJobError(
                f"model {name!r} has no hyperparameter {key!r}; allowed: {sorted(allowed)}"
            )
        low, high = allowed[key]
        if not isinstance(value, int) or not low <= value <= high:
            raise InvalidJobError(
                f"hyperparameter {key!r} of {name!r} must be an integer in [{low}, {high}], "
                f"got {value!r}"
            )


def build_model(
    name: str,
    feature_names: Sequence[str],
    categorical: Mapping[str, int],
    params: Mapping[str, int] | None = None,
    seed: int = 0,
    num_classes: int = 2,
) -> nn.Module:
    """Instantiate an approved model with deterministic initial weights.

    ``categorical`` maps a feature name to its cardinality; those columns of ``X`` hold codes.
    ``num_classes`` is 2 for a binary label (one logit) or K >= 3 (K logits).

    >>> m = build_model("logreg", ["age", "sex"], {"sex": 2})
    >>> m(torch.zeros(3, 2)).shape
    torch.Size([3])
    >>> build_model("mlp", ["age", "sex"], {"sex": 2}, num_classes=4)(torch.zeros(3, 2)).shape
    torch.Size([3, 4])
    """
    outputs = output_width(num_classes)
    params = dict(params or {})
    validate_model_params(name, params)
    index = {f: i for i, f in enumerate(feature_names)}
    unknown = set(categorical) - set(index)
    if unknown:
        raise InvalidJobError(f"categorical columns {sorted(unknown)} are not among the features")
    cat = {index[f]: int(c) for f, c in categorical.items()}
    torch.manual_seed(seed)
    n = len(feature_names)
    if name == "logreg":
        return LogisticRegression(n, cat, outputs=outputs)
    if name == "mlp":
        return TabularMLP(n, cat, **params, outputs=outputs)
    return TabularEmbeddingNet(n, cat, **params, outputs=outputs)
