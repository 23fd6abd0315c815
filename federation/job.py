"""The training job a firm submits: an approved model, the data it may use, and the privacy
parameters. Its :meth:`JobSpec.config_hash` identifies the exact configuration in the ledger,
the transparency log and the model card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from federation.errors import InvalidJobError
from federation.zoo import validate_model_params

#: The smallest epsilon a job may name (``target_epsilon``, ``count_epsilon``, ...): one
#: micro-epsilon, the unit in which the budget ledger counts and rounds every charge. A smaller
#: epsilon could not be charged exactly, so it is refused rather than charged as zero.
EPSILON_FLOOR = 1e-6

#: Most classes a multi-class job may name (``classes``).
MAX_CLASSES = 50

#: Largest JSON/YAML job file read by :meth:`JobSpec.from_file` (a job spec is a few hundred
#: bytes; anything far larger is not a job).
MAX_JOB_FILE_BYTES = 1_000_000


class JobSpec(BaseModel):
    """A federated training job.

    The privacy unit is a record (one person per row). With ``dp=True`` each node trains with
    DP-SGD: per-sample clipping to ``max_grad_norm``, Poisson sampling at ``sample_rate`` (or
    ``batch_size / rows`` when only ``batch_size`` is given), and Gaussian noise of
    ``noise_multiplier``, calibrated from ``target_epsilon``/``target_delta`` when not given.

    ``client_dp=True`` adds client-level DP (the unit is a whole node) on top, for federations
    of at least 20 nodes only; see :mod:`federation.client_dp`.

    ``seed`` (also accepted as ``init_seed``) fixes the model's *initial weights* and nothing
    else. The randomness that protects privacy (Poisson sampling of the rows and the Gaussian
    noise of every DP-SGD step) is drawn on each node from the operating system's CSPRNG and
    cannot be set by the job; see :mod:`federation.dpsgd`.

    Every float must be finite, and every epsilon at least :data:`EPSILON_FLOOR`. An invalid
    job raises :class:`~federation.errors.InvalidJobError` (also a ``ValueError``), whether it
    is built here or read with :meth:`parse` or :meth:`from_file`.

    >>> spec = JobSpec(model="logreg", features=("age",), label="y", nodes=("a", "b"),
    ...                sample_rate=0.01, target_epsilon=2.0)
    >>> len(spec.config_hash())
    64
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str
    model_params: dict[str, int] = Field(default_factory=dict)
    features: tuple[str, ...]
    categorical: dict[str, int] = Field(default_factory=dict)
    label: str
    #: The label value that is the positive class (``positive: ">50K"``) when the label column
    #: holds strings or several values; rows with any other value are class 0.
    positive: str | None = Field(default=None, min_length=1, max_length=200)
    #: A multi-class label's values (as text), in the model's output order: 3 to
    #: :data:`MAX_CLASSES` distinct values; exclusive with ``positive``. A row whose value is
    #: not listed is refused. Unset: a binary job.
    classes: tuple[str, ...] | None = None
    nodes: tuple[str, ...]
    rounds: int = Field(default=5, ge=1, le=1000)
    local_epochs: float = Field(default=1.0, gt=0, le=100)
    sample_rate: float | None = Field(default=None, gt=0, le=1)
    batch_size: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, le=100)
    strategy: Literal["fedavg", "fedprox", "fedavgm"] = "fedavg"
    proximal_mu: float = Field(default=0.0, ge=0)
    server_learning_rate: float = Field(default=1.0, gt=0, le=10)
    server_momentum: float = Field(default=0.0, ge=0, lt=1)
    dp: bool = True
    target_epsilon: float | None = Field(default=None, ge=EPSILON_FLOOR)
    target_delta: float = Field(default=1e-5, gt=0, lt=1)
    noise_multiplier: float | None = Field(default=None, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["rdp", "prv"] = "rdp"
    count_epsilon: float = Field(default=0.05, ge=EPSILON_FLOOR, le=1)
    eval_epsilon: float = Field(default=0.1, ge=EPSILON_FLOOR, le=1)
    #: Epsilon of the DP training loss the nodes release each round, over all rounds
    #: (``loss_epsilon / rounds`` per round); 0 releases no loss.
    loss_epsilon: float = Field(default=0.1, ge=0, le=1)
    client_dp: bool = False
    client_noise_multiplier: float | None = Field(default=None, gt=0)
    client_target_epsilon: float | None = Field(default=None, ge=EPSILON_FLOOR)
    client_clipping_norm: float = Field(default=1.0, gt=0)
    client_sample_rate: float = Field(default=1.0, gt=0, le=1)
    client_delta: float = Field(default=1e-5, gt=0, lt=1)
    min_nodes: int = Field(default=1, ge=1)
    round_timeout_s: float = Field(default=600.0, gt=0)
    #: Fixes the initial weights only (``init_seed`` is accepted as another name for it).
    seed: int = Field(default=0, ge=0, lt=2**63, validation_alias=AliasChoices("seed", "init_seed"))

    def __init__(self, **data: Any) -> None:
        """Validate the fields; raises :class:`InvalidJobError` naming every problem."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidJobError(f"invalid training job: {describe_errors(exc)}") from None

    @classmethod
    def with_defaults(cls, rows: int, epsilon: float | None, **fields: Any) -> JobSpec:
        """A job whose training settings follow :func:`default_settings` for ``rows`` (the
        training rows of the smallest node, e.g. its released DP row count) and ``epsilon``
        (None: a non-private job, ``dp=False``). Every field given in ``fields`` overrides the
        rule (a firm may set any of them); the job fields (model, features, label, nodes, ...)
        are given there too.

        >>> spec = JobSpec.with_defaults(20_000, 3.0, model="mlp", features=("age",),
        ...                              label="y", nodes=("a", "b"))
        >>> spec.rounds, spec.sample_rate, spec.learning_rate
        (10, 0.0128, 0.5)
        >>> JobSpec.with_defaults(20_000, 3.0, model="mlp", features=("age",), label="y",
        ...                       nodes=("a",), rounds=4).rounds
        4
        """
        settings = default_settings(rows, epsilon)
        if "batch_size" in fields:
            settings.pop("sample_rate")
        if "noise_multiplier" in fields:
            settings.pop("target_epsilon", None)
        return cls(**{**settings, **fields})

    @property
    def init_seed(self) -> int:
        """The seed of the initial weights (the only randomness a job may fix)."""
        return self.seed

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        # pydantic reports these ValueErrors as validation errors; __init__ and parse turn
        # them into one InvalidJobError naming every problem.
        validate_model_params(self.model, self.model_params)
        if not self.features:
            raise ValueError("features must name at least one column")
        if self.label in self.features:
            raise ValueError(f"label {self.label!r} must not also be a feature")
        if len(set(self.nodes)) != len(self.nodes) or not self.nodes:
            raise ValueError("nodes must be a non-empty list of distinct dataset ids")
        if self.min_nodes > len(self.nodes):
            raise ValueError(f"min_nodes={self.min_nodes} exceeds the {len(self.nodes)} nodes")
        if self.classes is not None:
            if self.positive is not None:
                raise ValueError("give either positive (binary) or classes (multi-class)")
            if not 3 <= len(self.classes) <= MAX_CLASSES:
                raise ValueError(
                    f"classes must list 3 to {MAX_CLASSES} label values (two classes: use positive)"
                )
            if len(set(self.classes)) != len(self.classes) or not all(
                0 < len(c) <= 200 for c in self.classes
            ):
                raise ValueError("classes must be distinct, non-empty label values")
        if 0 < self.loss_epsilon < EPSILON_FLOOR:
            raise ValueError(f"loss_epsilon must be 0 or at least {EPSILON_FLOOR}")
        unknown = set(self.categorical) - set(self.features)
        if unknown:
            raise ValueError(f"categorical columns {sorted(unknown)} are not features")
        if (self.sample_rate is None) == (self.batch_size is None):
            raise ValueError("give exactly one of sample_rate or batch_size")
        if self.strategy != "fedprox" and self.proximal_mu:
            raise ValueError("proximal_mu is only used with strategy='fedprox'")
        if self.strategy != "fedavgm" and (
            self.server_momentum or self.server_learning_rate != 1.0
        ):
            raise ValueError(
                "server_learning_rate and server_momentum are only used with strategy='fedavgm'"
            )
        if self.dp and (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("with dp=True give exactly one of target_epsilon or noise_multiplier")
        if self.client_dp:
            if (self.client_target_epsilon is None) == (self.client_noise_multiplier is None):
                raise ValueError(
                    "with client_dp=True give exactly one of client_target_epsilon or "
                    "client_noise_multiplier"
                )
            if not self.dp:
                raise ValueError(
                    "client_dp adds a node-level guarantee on top of record-level DP-SGD; "
                    "it needs dp=True"
                )
            if self.strategy != "fedavg":
                raise ValueError("client_dp replaces the aggregation; use strategy='fedavg'")
        elif self.client_noise_multiplier is not None or self.client_target_epsilon is not None:
            raise ValueError("client_noise_multiplier/client_target_epsilon need client_dp=True")
        return self

    @classmethod
    def parse(cls, data: object) -> JobSpec:
        """Validate ``data`` (a mapping, or JSON text) into a spec, raising
        :class:`InvalidJobError` that names every problem.

        >>> JobSpec.parse({"model": "logreg"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        federation.errors.InvalidJobError: invalid training job: features: Field required; ...
        """
        try:
            if isinstance(data, str | bytes):
                data = json.loads(data)
            if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
                raise InvalidJobError(
                    "invalid training job: a job is a mapping of fields (model, features, "
                    "label, nodes, ...); see docs/federation.md"
                )
            return cls(**data)
        except InvalidJobError:
            raise
        except json.JSONDecodeError as exc:
            raise InvalidJobError(
                f"invalid training job: not JSON (line {exc.lineno}, column {exc.colno}); "
                "see docs/federation.md for the format"
            ) from None
        except (ValueError, TypeError, RecursionError) as exc:
            # e.g. text that is not UTF-8, or nested too deeply to read
            raise InvalidJobError(
                f"invalid training job ({type(exc).__name__}); send a JSON object of job "
                "fields, see docs/federation.md"
            ) from None

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        """Read a job from a JSON or YAML file (by extension; YAML otherwise), raising only
        :class:`InvalidJobError`."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_JOB_FILE_BYTES:
                raise InvalidJobError(
                    f"{path}: larger than {MAX_JOB_FILE_BYTES} bytes; this is not a job file"
                )
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidJobError(f"{path}: cannot read the job file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise InvalidJobError(f"{path}: the job file is not UTF-8 text") from None
        if path.suffix.lower() == ".json":
            return cls.parse(text)
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
            raise InvalidJobError(f"{path}: not valid YAML; see docs/federation.md") from None
        try:
            return cls.parse(data)
        except InvalidJobError as exc:
            raise InvalidJobError(f"{path}: {exc}") from None

    def canonical_json(self) -> str:
        """The spec as sorted, compact JSON: the input of :meth:`config_hash`.

        Fields added after the first release are left out while they hold their default, so a
        job that does not use them keeps the hash it always had.
        """
        data = self.model_dump(mode="json")
        for name in _LATER_FIELDS:
            if getattr(self, name) == JobSpec.model_fields[name].default:
                data.pop(name)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON; equal specs always hash equally."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def num_classes(self) -> int:
        """2 for a binary job, ``len(classes)`` for a multi-class one."""
        return 2 if self.classes is None else len(self.classes)


#: The rule of :func:`default_settings`, in one place (documented in docs/federation.md).
DEFAULT_BATCH_PER_ROWS = 64  # expected batch = rows / 64 ...
DEFAULT_BATCH_RANGE = (16, 256)  # ... clamped to this range
DEFAULT_ROUNDS = {"dp": 10, "non_private": 60}
DEFAULT_LEARNING_RATE = {"dp": 0.5, "non_private": 0.1}
DEFAULT_SERVER_MOMENTUM = {"dp": 0.5, "non_private": 0.9}
DEFAULT_MAX_GRAD_NORM = 1.0


def default_settings(rows: int, epsilon: float | None) -> dict[str, Any]:
    """The training settings that work without tuning, from the data size and epsilon.

    ``rows`` is the number of training rows of the smallest node (its DP row count is
    enough); ``epsilon`` the job's target epsilon, or None for a non-private job. The rule:

    * expected batch ``B = clamp(rows // 64, 16, 256)`` per step, i.e.
      ``sample_rate = B / rows`` (larger batches for more rows: DP noise per step is divided
      by the batch);
    * one local epoch per round; FedAvg with server momentum (``strategy="fedavgm"``);
    * without DP: 60 rounds, learning rate 0.1, server momentum 0.9;
    * with DP: 10 rounds (fewer epochs leave less noise per step for the same epsilon),
      learning rate 0.5 on gradients clipped to norm 1.0, server momentum 0.5 (momentum also
      accumulates noise); ``target_epsilon = epsilon`` (the noise is calibrated from it).

    >>> default_settings(800, None)["sample_rate"]
    0.02
    """
    if rows < 1:
        raise InvalidJobError(f"default settings need the node's row count (>= 1), got {rows}")
    low, high = DEFAULT_BATCH_RANGE
    batch = min(high, max(low, rows // DEFAULT_BATCH_PER_ROWS))
    kind = "non_private" if epsilon is None else "dp"
    out: dict[str, Any] = {
        "rounds": DEFAULT_ROUNDS[kind],
        "local_epochs": 1.0,
        "sample_rate": min(1.0, round(batch / rows, 6)),
        "learning_rate": DEFAULT_LEARNING_RATE[kind],
        "strategy": "fedavgm",
        "server_momentum": DEFAULT_SERVER_MOMENTUM[kind],
        "max_grad_norm": DEFAULT_MAX_GRAD_NORM,
        "dp": epsilon is not None,
    }
    if epsilon is not None:
        out["target_epsilon"] = epsilon
    return out


def describe_errors(exc: ValidationError) -> str:
    """``field: message`` per problem on one line, without echoing the offending values; a
    field name that is not plain printable text is not echoed either, and at most five
    problems are named."""
    parts = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "job"
        if len(where) > 80 or not where.isprintable():
            where = "a field whose name is not plain text"
        message = " ".join(err["msg"].removeprefix("Value error, ").split())
        parts.append(f"{where}: {message}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more problems")
    return "; ".join(parts)


#: Fields left out of :meth:`JobSpec.canonical_json` while at their default (hash stability).
_LATER_FIELDS: tuple[str, ...] = (
    "positive",
    "classes",
    "loss_epsilon",
    "server_learning_rate",
    "server_momentum",
    "client_dp",
    "client_noise_multiplier",
    "client_target_epsilon",
    "client_clipping_norm",
    "client_sample_rate",
    "client_delta",
)
