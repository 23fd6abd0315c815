"""The model card released with a trained model.

It states what the model was trained on and what that cost, using only released values: DP row
counts (never exact ones), the epsilon/delta spent per dataset, the settings used, and the
held-out AUC, accuracy, majority-class baseline and class balance, all computed from the DP
histograms the nodes released (:func:`federation.client_app.evaluation_histogram`), or, for a
label with K >= 3 classes, from the DP confusion matrices they released
(:func:`federation.client_app.confusion_matrix`): accuracy is the trace over the total, each
class's share its row sum over the total, the baseline the largest share. AUC is not given for
K >= 3 classes: it is defined for two classes, and one-vs-rest averages would need a score
histogram per class (K times the cells, each with less of ``eval_epsilon``'s signal).

Every released cell carries OpenDP's discrete Laplace noise at scale ``1/eval_epsilon``, so the
card also states how precise its accuracy and baseline are: a 95% margin computed from public
facts only (how many cells each sum adds up, the scale), post-processing at no privacy cost
(:func:`evaluation_margins`). It warns when the model does no better than predicting the
majority class beyond that noise, and when the held-out rows are too few for the DP figures to
tell.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

from federation.job import JobSpec


@dataclass(frozen=True)
class NodeCard:
    """One dataset's line on the card."""

    dataset: str
    dp_rows: int | None
    epsilon_spent: float
    delta_spent: float
    rounds_participated: int
    dp_test_accuracy: float | None
    dp_test_auc: float | None = None
    #: Share of the positive class among the node's held-out rows (DP).
    dp_positive_share: float | None = None


@dataclass(frozen=True)
class ClientLevelCard:
    """Client-level DP of a job (unit: a whole node), reported apart from per-dataset costs."""

    epsilon_spent: float
    delta: float
    noise_multiplier: float
    clipping_norm: float
    client_sample_rate: float
    rounds_released: int


@dataclass(frozen=True)
class ModelCard:
    """Everything released about a trained model besides its weights."""

    model: str
    model_params: Mapping[str, int]
    features: tuple[str, ...]
    label: str
    strategy: str
    rounds: int
    differential_privacy: bool
    privacy_unit: str
    accountant: str
    max_grad_norm: float
    config_hash: str
    nodes: tuple[NodeCard, ...]
    dp_test_accuracy: float | None
    failures: tuple[str, ...]
    client_level: ClientLevelCard | None = None
    #: Which randomness the job fixed and where the rest came from (see :func:`randomness`).
    randomness: Mapping[str, str] = field(default_factory=dict)
    dp_test_auc: float | None = None
    #: Accuracy of always predicting the majority class of the held-out rows (DP).
    dp_majority_baseline: float | None = None
    dp_positive_share: float | None = None
    #: The training settings used (learning rate, rounds, batch, clipping, ...).
    settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: A multi-class label's classes in the model's output order (empty when binary).
    classes: tuple[str, ...] = ()
    #: Each class's share of the held-out rows (DP; multi-class jobs only).
    dp_class_shares: Mapping[str, float] = field(default_factory=dict)
    #: Epsilon of the per-round DP training loss over the job (0: none released).
    loss_epsilon: float | None = None
    #: 95% margin of ``dp_test_accuracy`` from the evaluation noise (see
    #: :func:`evaluation_margins`).
    dp_test_accuracy_margin: float | None = None
    #: 95% margin of ``dp_majority_baseline``, likewise.
    dp_majority_baseline_margin: float | None = None
    #: 95% margin of ``dp_test_auc`` from the evaluation noise (:func:`histogram_auc_margin`).
    dp_test_auc_margin: float | None = None

    def to_json(self) -> str:
        """The card as indented JSON (``inf`` epsilon for non-private jobs becomes a string)."""
        data = asdict(self)
        for node in data["nodes"]:
            if node["epsilon_spent"] == float("inf"):
                node["epsilon_spent"] = "inf"
        return json.dumps(data, indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """A human-readable card."""
        lines = [
            f"# Model card: {self.model} predicting `{self.label}`",
            "",
            f"- configuration hash: `{self.config_hash}`",
            f"- strategy: {self.strategy}, rounds: {self.rounds}",
            f"- differential privacy: {self.differential_privacy} (unit: {self.privacy_unit}, "
            f"accountant: {self.accountant}, clipping norm {self.max_grad_norm})",
            f"- features: {', '.join(self.features)}",
            *[f"- randomness, {k.replace('_', ' ')}: {v}" for k, v in self.randomness.items()],
            f"- settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
            "- held-out accuracy (DP, all nodes, 95% margin): "
            + _fmt_pm(self.dp_test_accuracy, self.dp_test_accuracy_margin),
            "- held-out AUC (DP, 95% margin): "
            + _fmt_pm(self.dp_test_auc, self.dp_test_auc_margin),
            "- majority-class baseline accuracy (DP, 95% margin): "
            + _fmt_pm(self.dp_majority_baseline, self.dp_majority_baseline_margin),
            f"- positive class share (DP): {_fmt(self.dp_positive_share)}",
            *(
                [
                    "- class shares (DP): "
                    + ", ".join(f"{c}={_fmt(self.dp_class_shares.get(c))}" for c in self.classes)
                ]
                if self.classes
                else []
            ),
            f"- training loss epsilon (all rounds): {_fmt(self.loss_epsilon)}",
            *[f"- **WARNING**: {w}" for w in self.warnings],
            "",
            "| dataset | rows (DP) | epsilon | delta | rounds | accuracy (DP) | AUC (DP) "
            "| positive share (DP) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in self.nodes:
            lines.append(
                f"| {n.dataset} | {n.dp_rows} | {n.epsilon_spent:.3f} | {n.delta_spent:g} | "
                f"{n.rounds_participated} | {_fmt(n.dp_test_accuracy)} | {_fmt(n.dp_test_auc)} "
                f"| {_fmt(n.dp_positive_share)} |"
            )
        if self.client_level is not None:
            c = self.client_level
            lines += [
                "",
                f"Client-level DP (unit: a whole node, one guarantee for the federation): "
                f"epsilon {c.epsilon_spent:.3f} at delta {c.delta:g} over {c.rounds_released} "
                f"rounds (noise multiplier {c.noise_multiplier:.3f}, clipping norm "
                f"{c.clipping_norm}, node sampling rate {c.client_sample_rate}).",
            ]
        if self.failures:
            lines += ["", "Failures:", *[f"- {f}" for f in self.failures]]
        return "\n".join(lines) + "\n"


def randomness(spec: JobSpec) -> dict[str, str]:
    """What the requester fixed (the initial weights only) and what came from the nodes' CSPRNG.

    >>> spec = JobSpec(model="logreg", features=("a",), label="y", nodes=("n",),
    ...                sample_rate=0.1, target_epsilon=1.0, seed=7)
    >>> randomness(spec)["initial_weights"]
    'fixed by the job (seed 7)'
    """
    out = {"initial_weights": f"fixed by the job (seed {spec.seed})"}
    if spec.dp:
        out["sampling_and_noise"] = (
            "drawn on each node from the operating system's CSPRNG (os.urandom), re-seeded "
            "every DP-SGD step; not settable by the job"
        )
    else:
        out["sampling_and_noise"] = "none: non-private training (dp=False)"
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _fmt_pm(x: float | None, margin: float | None) -> str:
    """``A ± M`` (``A`` clamped to [0, 1]); just ``A`` when no margin is known."""
    if x is None:
        return "n/a"
    x = min(1.0, max(0.0, x))
    return _fmt(x) if margin is None else f"{x:.3f} ± {margin:.3f}"


def build_model_card(
    spec: JobSpec,
    *,
    config_hash: str,
    dp_rows: Mapping[str, int],
    spent: Mapping[str, tuple[float, float]],
    rounds_participated: Mapping[str, int],
    dp_correct: Mapping[str, int],
    dp_total: Mapping[str, int],
    failures: tuple[str, ...],
    client_level: ClientLevelCard | None = None,
    dp_histograms: Mapping[str, Mapping[str, int]] | None = None,
    noise_multipliers: Mapping[str, float] | None = None,
) -> ModelCard:
    """Assemble the card of a finished job from released values only.

    ``spec`` is the job's :class:`~federation.job.JobSpec`; accuracies are ratios of DP counts.
    ``dp_histograms`` holds each node's released evaluation histogram (``pos-i``/``neg-i``
    cells); AUC, baseline and class balance come from them (post-processing, no extra cost).
    """
    histograms = dict(dp_histograms or {})
    multi = spec.classes is not None
    nodes = []
    for name in spec.nodes:
        eps, delta = spent[name]
        hist = None if multi else histograms.get(name)
        nodes.append(
            NodeCard(
                dataset=name,
                dp_rows=dp_rows.get(name),
                epsilon_spent=eps,
                delta_spent=delta,
                rounds_participated=rounds_participated.get(name, 0),
                dp_test_accuracy=_ratio(dp_correct.get(name), dp_total.get(name)),
                dp_test_auc=None if hist is None else histogram_auc(hist),
                dp_positive_share=None if hist is None else _positive_share(hist),
            )
        )
    total_correct = sum(dp_correct.values()) if dp_correct else None
    total = sum(dp_total.values()) if dp_total else None
    pooled = _pool(histograms.values()) if histograms else None
    accuracy = _ratio(total_correct, total)
    shares: dict[str, float] = {}
    if multi:
        shares = {} if pooled is None else class_shares(pooled, spec.classes or ())
        share, auc = None, None
        baseline = max(shares.values()) if shares else None
    else:
        share = None if pooled is None else _positive_share(pooled)
        baseline = None if share is None else max(share, 1.0 - share)
        auc = None if pooled is None else histogram_auc(pooled)
    margins = evaluation_margins(
        spec,
        correct=total_correct,
        total=total,
        pooled=pooled,
        cells={n: len(h) for n, h in histograms.items()},
        nodes=tuple(dp_total),
    )
    acc_margin, base_margin = margins
    auc_margin = (
        None
        if auc is None or pooled is None
        else histogram_auc_margin(pooled, len(dp_total), 1.0 / spec.eval_epsilon)
    )
    return ModelCard(
        model=spec.model,
        model_params=dict(spec.model_params),
        features=tuple(spec.features),
        label=spec.label,
        strategy=spec.strategy,
        rounds=spec.rounds,
        differential_privacy=spec.dp,
        privacy_unit="person (at most one row per person)",
        accountant=spec.accountant,
        max_grad_norm=spec.max_grad_norm,
        config_hash=config_hash,
        nodes=tuple(nodes),
        dp_test_accuracy=accuracy,
        failures=failures,
        client_level=client_level,
        randomness=randomness(spec),
        dp_test_auc=auc,
        dp_majority_baseline=baseline,
        dp_positive_share=share,
        settings=settings_used(spec, noise_multipliers),
        warnings=quality_warnings(accuracy, baseline, auc, acc_margin, base_margin, auc_margin),
        classes=tuple(spec.classes or ()),
        dp_class_shares=shares,
        loss_epsilon=spec.loss_epsilon,
        dp_test_accuracy_margin=acc_margin,
        dp_majority_baseline_margin=base_margin,
        dp_test_auc_margin=auc_margin,
    )


def class_shares(confusion: Mapping[str, int], classes: tuple[str, ...]) -> dict[str, float]:
    """Each class's share of the held-out rows from a released confusion matrix (``cm-t-p``
    cells, summed over nodes unclamped): row sums clamped at zero over their total.

    >>> class_shares({"cm-0-0": 3, "cm-0-1": 1, "cm-1-1": 4, "cm-2-2": -1}, ("a", "b", "c"))
    {'a': 0.5, 'b': 0.5, 'c': 0.0}
    """
    rows = [
        max(0, sum(int(v) for k, v in confusion.items() if k.startswith(f"cm-{t}-")))
        for t in range(len(classes))
    ]
    total = sum(rows)
    if not total:
        return {}
    return {c: r / total for c, r in zip(classes, rows, strict=True)}


#: The card warns when DP accuracy exceeds the majority-class baseline by less than this.
BASELINE_MARGIN = 0.005
#: ... or when the DP AUC is at most this (the model ranks rows about as well as chance).
CHANCE_AUC = 0.55
#: A 95% margin wider than this (accuracy or baseline) is too wide for the card to tell.
MAX_MARGIN = 0.05
#: Coverage of the card's margins.
CONFIDENCE = 0.95
#: Score bins of a binary evaluation histogram (``federation.client_app.EVAL_BINS``; kept here
#: so the card needs neither torch nor Flower).
_EVAL_BINS = 10


def discrete_laplace_variance(scale: float) -> float:
    """Variance of the discrete Laplace noise OpenDP adds to an integer count at ``scale``
    (probability of ``x`` proportional to ``exp(-|x|/scale)``): ``2p / (1 - p)^2`` with
    ``p = exp(-1/scale)``, a little under the continuous ``2 scale^2``.

    >>> round(discrete_laplace_variance(10.0), 2)
    199.83
    """
    p = math.exp(-1.0 / scale)
    return 2.0 * p / (1.0 - p) ** 2


def sum_margin(cells: int, scale: float, z: float) -> float:
    """Half-width ``z * sd`` of the noise on a sum of ``cells`` independent DP cells."""
    return z * math.sqrt(cells * discrete_laplace_variance(scale))


def ratio_margin(num: float, num_margin: float, den: float, den_margin: float) -> float:
    """Margin of ``num / den`` from separate margins on numerator and denominator: the widest
    distance from the point ratio to ``(num -+ num_margin) / (den +- den_margin)``, each end
    clamped to [0, 1]; 1.0 when the denominator may be zero or less (nothing can be told)."""
    if den <= 0 or den - den_margin <= 0:
        return 1.0
    point = min(1.0, max(0.0, num / den))
    low = min(1.0, max(0.0, (num - num_margin) / (den + den_margin)))
    high = min(1.0, max(0.0, (num + num_margin) / (den - den_margin)))
    return max(point - low, high - point)


def evaluation_margins(
    spec: JobSpec,
    *,
    correct: int | None,
    total: int | None,
    pooled: Mapping[str, int] | None,
    cells: Mapping[str, int],
    nodes: tuple[str, ...],
) -> tuple[float | None, float | None]:
    """95% margins of the card's accuracy and majority-class baseline, from public facts only:
    each node's cells carry independent discrete Laplace noise at scale ``1/eval_epsilon``
    (:func:`federation.client_app.dp_cell`), the DP total sums all of a node's cells (2 x 10
    histogram cells when binary, K x K confusion cells otherwise), the correct count the
    diagonal half (10 cells, or K), and each class's count a row (10 cells, or K). ``nodes``
    are the nodes whose counts were summed, ``cells`` how many cells each one released.

    A sum of many cells is close to normal, so each sum is bounded at ``z`` standard deviations.
    The ratio's numerator and denominator are bounded separately (:func:`ratio_margin`), and
    the bounds are joined by a union bound: accuracy spends 5% over 2 sums (z = 2.24), the
    baseline over its K class rows and the total (z = 2.39 for 2 classes), so each margin
    holds with at least 95% under the normal approximation. Post-processing: no privacy cost.
    """
    if correct is None or total is None or not nodes:
        return None, None
    k = len(spec.classes) if spec.classes is not None else 2
    per_node_total = k * k if spec.classes is not None else 2 * _EVAL_BINS
    per_class = k if spec.classes is not None else _EVAL_BINS
    n_total = sum(cells.get(n, per_node_total) for n in nodes)
    scale = 1.0 / spec.eval_epsilon
    alpha = 1.0 - CONFIDENCE

    z_acc = NormalDist().inv_cdf(1.0 - alpha / (2 * 2))
    acc = ratio_margin(
        correct,
        sum_margin(len(nodes) * per_class, scale, z_acc),
        total,
        sum_margin(n_total, scale, z_acc),
    )
    if pooled is None:
        return acc, None
    z_base = NormalDist().inv_cdf(1.0 - alpha / (2 * (k + 1)))
    class_margin = sum_margin(len(nodes) * per_class, scale, z_base)
    total_margin = sum_margin(n_total, scale, z_base)
    rows = _class_rows(pooled, spec.classes)
    den = sum(rows)
    if den - total_margin <= 0:
        return acc, 1.0
    # The largest class row's bounds are the largest of the rows' bounds.
    top = max(rows)
    point = min(1.0, top / den)
    low = max(0.0, max(r - class_margin for r in rows) / (den + total_margin))
    high = min(1.0, max(r + class_margin for r in rows) / (den - total_margin))
    return acc, max(point - low, high - point)


def _class_rows(pooled: Mapping[str, int], classes: tuple[str, ...] | None) -> list[int]:
    """Each class's pooled count clamped at zero (what the card's shares and baseline use)."""
    if classes is not None:
        return [
            max(0, sum(int(v) for key, v in pooled.items() if key.startswith(f"cm-{t}-")))
            for t in range(len(classes))
        ]
    return [
        max(0, sum(int(v) for key, v in pooled.items() if key.startswith(f"{kind}-")))
        for kind in ("pos", "neg")
    ]


def quality_warnings(
    accuracy: float | None,
    baseline: float | None,
    auc: float | None,
    accuracy_margin: float | None = None,
    baseline_margin: float | None = None,
    auc_margin: float | None = None,
) -> tuple[str, ...]:
    """The card's warnings, judged against the evaluation noise (95% margins, 0 if unknown):

    * "no better than the majority class" when the accuracy's upper end is below the
      baseline's lower end + :data:`BASELINE_MARGIN` (beyond the noise), or, with both margins
      within :data:`MAX_MARGIN`, when the accuracy is below baseline + ``BASELINE_MARGIN``;
    * "too few held-out rows to tell" when a margin is wider than ``MAX_MARGIN`` and the
      accuracy is not above the baseline beyond the noise either;
    * "close to chance" when the DP AUC's upper end is at most :data:`CHANCE_AUC` (beyond the
      noise), or, with its margin within ``MAX_MARGIN``, when the AUC is at most ``CHANCE_AUC``;
      a wider margin says nothing about the ranking either way.

    >>> quality_warnings(0.76, 0.76, 0.5)[0][:40]
    'held-out accuracy 0.760 is no better tha'
    >>> quality_warnings(0.85, 0.76, 0.9)
    ()
    >>> quality_warnings(0.0, 0.645, None, 0.6, 0.4)[0][:42]
    'the held-out rows are too few for the DP e'
    >>> quality_warnings(0.85, 0.76, 0.52, 0.01, 0.01, 0.2)  # AUC too noisy to judge
    ()
    """
    out = []
    if accuracy is not None and baseline is not None:
        m_acc = accuracy_margin or 0.0
        m_base = baseline_margin or 0.0
        a, b = min(1.0, max(0.0, accuracy)), min(1.0, max(0.0, baseline))
        worse = a + m_acc < b - m_base + BASELINE_MARGIN
        better = a - m_acc >= b + m_base + BASELINE_MARGIN
        wide = max(m_acc, m_base) > MAX_MARGIN
        if worse or (not wide and a < b + BASELINE_MARGIN):
            out.append(
                f"held-out accuracy {_fmt_pm(a, accuracy_margin)} is no better than always "
                f"predicting the majority class ({_fmt_pm(b, baseline_margin)}); the model is "
                "not useful as it stands. Try the default settings (JobSpec.with_defaults), "
                "more rows, or a larger epsilon"
            )
        elif wide and not better:
            out.append(
                "the held-out rows are too few for the DP evaluation to tell (accuracy "
                f"{a:.3f} ± {m_acc:.3f}, majority-class baseline {b:.3f} ± {m_base:.3f}); "
                "evaluate on more rows or raise eval_epsilon"
            )
    if auc is not None:
        m_auc = auc_margin or 0.0
        if auc + m_auc <= CHANCE_AUC or (m_auc <= MAX_MARGIN and auc <= CHANCE_AUC):
            out.append(
                f"held-out AUC {_fmt_pm(auc, auc_margin)} is close to chance (0.5): the model "
                "barely ranks the positive class above the negative one"
            )
    return tuple(out)


def settings_used(
    spec: JobSpec, noise_multipliers: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The training settings of ``spec`` as the card lists them."""
    out: dict[str, Any] = {
        "learning_rate": spec.learning_rate,
        "rounds": spec.rounds,
        "local_epochs": spec.local_epochs,
        "strategy": spec.strategy,
        "max_grad_norm": spec.max_grad_norm,
    }
    if spec.sample_rate is not None:
        out["sample_rate"] = spec.sample_rate
    if spec.batch_size is not None:
        out["batch_size"] = spec.batch_size
    if spec.strategy == "fedavgm":
        out["server_learning_rate"] = spec.server_learning_rate
        out["server_momentum"] = spec.server_momentum
    if spec.strategy == "fedprox":
        out["proximal_mu"] = spec.proximal_mu
    if spec.dp:
        if spec.target_epsilon is not None:
            out["target_epsilon"] = spec.target_epsilon
        out["target_delta"] = spec.target_delta
        if noise_multipliers:
            out["noise_multiplier_max"] = round(max(noise_multipliers.values()), 4)
    out["eval_epsilon"] = spec.eval_epsilon
    if spec.positive is not None:
        out["positive"] = spec.positive
    if spec.classes is not None:
        out["classes"] = ",".join(spec.classes)
    return out


def _bins(hist: Mapping[str, int], kind: str) -> list[int]:
    count = sum(1 for key in hist if key.startswith(f"{kind}-"))
    return [max(0, int(hist.get(f"{kind}-{i}", 0))) for i in range(count)]


def _pool(hists: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Cells summed over nodes as released (noisy, possibly negative): clamp after summing."""
    out: dict[str, int] = {}
    for hist in hists:
        for key, value in hist.items():
            out[key] = out.get(key, 0) + int(value)
    return out


def _positive_share(hist: Mapping[str, int]) -> float | None:
    # Sums of the unclamped cells are unbiased; clamp only the totals.
    pos = max(0, sum(int(v) for k, v in hist.items() if k.startswith("pos-")))
    neg = max(0, sum(int(v) for k, v in hist.items() if k.startswith("neg-")))
    return _ratio(pos, pos + neg)


def histogram_auc(hist: Mapping[str, int]) -> float | None:
    """AUC from a histogram of scores by class (``pos-i``/``neg-i``, bin i below bin i+1):
    the probability that a positive row scores above a negative one, ties counting half.

    >>> histogram_auc({"pos-0": 0, "pos-1": 5, "neg-0": 5, "neg-1": 0})
    1.0
    >>> histogram_auc({"pos-0": 2, "pos-1": 2, "neg-0": 2, "neg-1": 2})
    0.5
    """
    pos, neg = _bins(hist, "pos"), _bins(hist, "neg")
    total = sum(pos) * sum(neg)
    if not total:
        return None
    below = 0
    wins = 0.0
    for i, p in enumerate(pos):
        n_i = neg[i] if i < len(neg) else 0
        wins += p * (below + 0.5 * n_i)
        below += n_i
    return min(1.0, max(0.0, wins / total))


def histogram_auc_margin(
    pooled: Mapping[str, int], nodes: int, scale: float, z: float | None = None
) -> float | None:
    """95% margin of :func:`histogram_auc` on ``pooled`` from the evaluation noise: each
    pooled bin sums ``nodes`` cells, each with independent discrete Laplace noise at ``scale``.

    The AUC is a smooth function of the bin counts, so its noise is close to normal with the
    variance the first-order (delta method) expansion gives: the sum over bins of the squared
    partial derivative times the bin's noise variance. The margin is ``z`` (1.96 for 95%)
    standard deviations, capped at 1; 1.0 when a class has no rows (nothing can be told).
    Post-processing of released values: no privacy cost.

    >>> big = {f"pos-{i}": 1000 * i for i in range(10)} | {
    ...     f"neg-{i}": 1000 * (9 - i) for i in range(10)}
    >>> round(histogram_auc_margin(big, 2, 10.0), 4)
    0.0014
    >>> histogram_auc_margin({"pos-0": 0, "neg-0": 5}, 2, 10.0)
    1.0
    """
    pos, neg = _bins(pooled, "pos"), _bins(pooled, "neg")
    n_pos, n_neg = sum(pos), sum(neg)
    auc = histogram_auc(pooled)
    if auc is None or n_pos <= 0 or n_neg <= 0:
        return 1.0
    size = max(len(pos), len(neg))
    pos += [0] * (size - len(pos))
    neg += [0] * (size - len(neg))
    pairs = n_pos * n_neg
    # d AUC / d pos_i: negatives below bin i plus half of those in it, over all pairs
    below, squares = 0, 0.0
    for i in range(size):
        squares += ((below + 0.5 * neg[i]) / pairs - auc / n_pos) ** 2
        below += neg[i]
    # d AUC / d neg_j: positives above bin j plus half of those in it, over all pairs
    above = 0
    for j in reversed(range(size)):
        squares += ((above + 0.5 * pos[j]) / pairs - auc / n_neg) ** 2
        above += pos[j]
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2) if z is None else z
    return min(1.0, z * math.sqrt(squares * nodes * discrete_laplace_variance(scale)))


def _ratio(num: int | None, den: int | None) -> float | None:
    if num is None or not den:
        return None
    return min(1.0, max(0.0, num / den))
