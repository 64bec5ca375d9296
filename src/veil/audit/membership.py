"""Membership inference: how much a trained model gives away about who was in its training set.

Attacks (score: higher means "member"):

- ``threshold`` (Yeom et al. 2018): the model's loss on the example, with a threshold per
  class (losses are centred on each class's median loss over the candidates).
- ``shadow`` (Shokri et al. 2017): shadow models trained like the target give examples of
  outputs on members and non-members; an attack classifier per class learns to tell them
  apart from the output (true-label and top-3 log-probabilities).
- ``lira`` (Carlini et al. 2022): reference models trained on random halves of the
  candidates give, for every example, the distribution of the logit-scaled confidence
  log(p/(1-p)) when it was IN their training set and when it was OUT; the score is the
  likelihood ratio of the target model's confidence (``online``), or how far it sits above
  the OUT distribution alone (``offline``, half the reference models' cost is not needed).

Reported as the field does: ROC, AUC, TPR at 0.1% and 1% FPR, attacker advantage
(max TPR - FPR), and the most exposed records (indices only). For a DP model the analytic
bound TPR <= e^ε·FPR + δ is drawn beside the measured ROC.

Threat model: the attacker queries the model (black box, confidences) and knows the data
distribution and the training recipe (it trains reference models); that is what LiRA
assumes, and what makes it the strongest practical test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.progress import progress
from veil.core.train import batches

ATTACKS = ("threshold", "lira", "lira-offline", "shadow")
FPR_POINTS = (1e-3, 1e-2)


@dataclass
class MembershipResult:
    """The attack's scores on members and non-members and the figures derived from them."""

    attack: str
    auc: float
    tpr_at: dict[str, float]
    advantage: float
    roc: list[list[float]]
    exposed: list[int]
    n_members: int
    n_nonmembers: int
    details: dict = field(default_factory=dict)


@torch.no_grad()
def logits_of(model: nn.Module, dataset: ArrayDataset, batch_size: int = 1024) -> np.ndarray:
    """The model's logits on every example, as float64."""
    model.eval()
    return np.concatenate([model(x).double().numpy() for x, _ in batches(dataset, batch_size)])


def shifted_queries(dataset: ArrayDataset, augment: int) -> list[ArrayDataset]:
    """The data set and up to ``augment`` copies shifted by one pixel (images only): LiRA's
    augmentation queries, which average out the noise of a single query."""
    out = [dataset]
    if augment <= 0 or len(dataset.input_shape) != 3:
        return out
    x, y = dataset.batch(torch.arange(len(dataset)))
    for dy, dx in [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)][:augment]:
        moved = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        out.append(
            ArrayDataset(moved, y, classes=dataset.classes, name=dataset.name, split=dataset.split)
        )
    return out


def confidence_from_logits(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log(p_y / (1 - p_y)) for each row's true label y, computed stably from logits."""
    t = torch.as_tensor(logits)
    y = torch.as_tensor(labels)[:, None]
    true = t.gather(1, y).squeeze(1)
    others = t.scatter(1, y, float("-inf")).logsumexp(1)
    return (true - others).numpy()


def logit_confidence(model: nn.Module, dataset: ArrayDataset) -> np.ndarray:
    """log(p_y / (1 - p_y)) for each example's true label y."""
    return confidence_from_logits(logits_of(model, dataset), dataset.targets.numpy())


@torch.no_grad()
def losses(model: nn.Module, dataset: ArrayDataset, batch_size: int = 1024) -> np.ndarray:
    """Per-example cross-entropy loss."""
    model.eval()
    return np.concatenate(
        [
            nn.functional.cross_entropy(model(x), y, reduction="none").numpy()
            for x, y in batches(dataset, batch_size)
        ]
    )


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over all thresholds, and the area under the curve."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, float(roc_auc_score(labels, scores))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best TPR among thresholds whose FPR is at most ``target``."""
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def _concat(a: ArrayDataset, b: ArrayDataset) -> ArrayDataset:
    xa, ya = a.batch(torch.arange(len(a)))
    xb, yb = b.batch(torch.arange(len(b)))
    return ArrayDataset(
        torch.cat([xa, xb]), torch.cat([ya, yb]), classes=a.classes, name=a.name, split="candidates"
    )


def threshold_scores(model: nn.Module, candidates: ArrayDataset) -> np.ndarray:
    """Yeom et al.'s loss attack with per-class thresholds: minus the loss, centred per class."""
    loss = losses(model, candidates)
    labels = candidates.targets.numpy()
    centred = loss.copy()
    for c in np.unique(labels):
        centred[labels == c] -= np.median(loss[labels == c])
    return -centred


def reference_logits(
    candidates: ArrayDataset,
    train_fn: Callable[[ArrayDataset], nn.Module],
    n_reference: int,
    seed: int = 0,
    quiet: bool | None = None,
    augment: int = 0,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Train ``n_reference`` models, each on a random half of the candidates; return which
    candidates each saw (R, N) and its logits on them (R, Q, N, C) for Q queries (the
    candidates and ``augment`` shifted copies).

    ``workers`` > 1 trains that many models at once in threads (torch releases the GIL),
    each on one core: worth it where memory allows several models and there are more cores
    than one model's training keeps busy. Which examples each model sees does not depend on
    it; initial weights may then differ from a one-worker run.
    """
    from concurrent.futures import ThreadPoolExecutor

    if n_reference < 2:
        raise ConfigError(f"attacks need at least 2 reference models, got {n_reference}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    n = len(candidates)
    rng = np.random.default_rng(seed)
    inside = np.stack([rng.permutation(n) < n // 2 for _ in range(n_reference)])
    queries = shifted_queries(candidates, augment)

    def one(r: int) -> np.ndarray:
        ref = train_fn(candidates.subset(np.flatnonzero(inside[r])))
        return np.stack([logits_of(ref, q) for q in queries])

    threads = torch.get_num_threads()
    with progress("reference models", n_reference, quiet) as bar:
        if workers == 1:
            logits = []
            for r in range(n_reference):
                logits.append(one(r))
                bar.advance()
        else:
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers) as pool:
                    logits = list(pool.map(one, range(n_reference)))
            finally:
                torch.set_num_threads(threads)
            bar.advance(n_reference)
    return inside, np.stack(logits)


def lira_scores(
    model: nn.Module,
    candidates: ArrayDataset,
    references: tuple[np.ndarray, np.ndarray],
    online: bool = True,
) -> np.ndarray:
    """LiRA scores from reference models (see :func:`reference_logits`).

    With fewer than 64 reference models the per-example variances are replaced by one
    global variance per world (IN, OUT), as Carlini et al. advise: too few samples make
    per-example variances noisy.
    """
    from scipy.stats import norm

    inside, logits = references
    labels = candidates.targets.numpy()
    queries = shifted_queries(candidates, logits.shape[1] - 1)
    # one confidence per model: the mean over the queries
    confidences = np.stack(
        [
            np.mean([confidence_from_logits(q, labels) for q in per_model], axis=0)
            for per_model in logits
        ]
    )
    target = np.mean([logit_confidence(model, q) for q in queries], axis=0)
    pooled = len(inside) < 64
    out_mean, out_std = _masked_stats(confidences, ~inside, pooled)
    if not online:
        return norm.logcdf(target, out_mean, out_std)  # higher: further above the OUT world
    in_mean, in_std = _masked_stats(confidences, inside, pooled)
    return norm.logpdf(target, in_mean, in_std) - norm.logpdf(target, out_mean, out_std)


def _shadow_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per example: log-probability of the true label and the three largest log-probabilities."""
    logp = torch.log_softmax(torch.as_tensor(logits), 1)
    true = logp.gather(1, torch.as_tensor(labels)[:, None])
    top = logp.topk(min(3, logp.shape[1]), 1).values
    return torch.cat([true, top], 1).numpy()


def shadow_scores(
    model: nn.Module, candidates: ArrayDataset, references: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Shokri et al. (2017): one attack classifier per class, trained on shadow models'
    outputs for examples they did and did not train on, applied to the target's outputs."""
    from sklearn.linear_model import LogisticRegression

    inside, logits = references
    labels = candidates.targets.numpy()
    feats = np.concatenate([_shadow_features(lg[0], labels) for lg in logits])
    member = inside.reshape(-1)
    shadow_labels = np.tile(labels, len(logits))
    target = _shadow_features(logits_of(model, candidates), labels)
    scores = np.zeros(len(candidates))
    for c in np.unique(labels):
        rows, here = shadow_labels == c, labels == c
        if len(np.unique(member[rows])) < 2:
            continue
        clf = LogisticRegression(max_iter=1000).fit(feats[rows], member[rows])
        scores[here] = clf.decision_function(target[here])
    return scores


def _masked_stats(values: np.ndarray, mask: np.ndarray, pooled: bool):
    """Per-example mean and standard deviation over the reference models in ``mask``."""
    count = mask.sum(0).clip(min=1)
    mean = (values * mask).sum(0) / count
    sq = ((values - mean) ** 2) * mask
    var = sq.sum() / mask.sum() if pooled else sq.sum(0) / count
    return mean, np.sqrt(var) + 1e-3


def evaluate_attack(
    attack: str, scores: np.ndarray, labels: np.ndarray, top: int = 10, **details
) -> MembershipResult:
    """ROC, AUC, TPR at low FPR, advantage and most exposed members from raw scores."""
    fpr, tpr, auc = roc(scores, labels)
    keep = np.unique(np.concatenate([np.geomspace(1, len(fpr) - 1, 200).astype(int), [0]]))
    members = np.flatnonzero(labels == 1)
    exposed = members[np.argsort(-scores[members])][:top]
    return MembershipResult(
        attack=attack,
        auc=auc,
        tpr_at={f"{p:g}": tpr_at_fpr(fpr, tpr, p) for p in FPR_POINTS},
        advantage=float((tpr - fpr).max()),
        roc=[[float(fpr[i]), float(tpr[i])] for i in keep],
        exposed=[int(i) for i in exposed],
        n_members=int(labels.sum()),
        n_nonmembers=int((labels == 0).sum()),
        details=details,
    )


def membership(
    model: nn.Module,
    train_data: ArrayDataset,
    holdout_data: ArrayDataset,
    attack: str = "lira",
    train_fn: Callable[[ArrayDataset], nn.Module] | None = None,
    n_reference: int = 16,
    seed: int = 0,
    quiet: bool | None = None,
    augment: int = 0,
    workers: int = 1,
) -> MembershipResult:
    """Attack ``model``: members are ``train_data`` (what it was trained on), non-members
    ``holdout_data`` (drawn from the same distribution, never trained on).

    LiRA needs ``train_fn(dataset) -> trained model``, the model's own training recipe;
    ``augment`` adds that many one-pixel-shifted queries per example (images); ``workers``
    trains reference models in parallel (see :func:`reference_logits`).
    """
    if attack not in ATTACKS:
        raise ConfigError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    if len(train_data) == 0 or len(holdout_data) == 0:
        raise ConfigError("membership inference needs members and non-members")
    candidates = _concat(train_data, holdout_data)
    labels = np.concatenate([np.ones(len(train_data)), np.zeros(len(holdout_data))]).astype(int)
    if attack == "threshold":
        scores = threshold_scores(model, candidates)
        return evaluate_attack(attack, scores, labels)
    if train_fn is None:
        raise ConfigError(f"{attack} trains reference models: give train_fn (the recipe)")
    refs = reference_logits(candidates, train_fn, n_reference, seed, quiet, augment, workers)
    if attack == "shadow":
        scores = shadow_scores(model, candidates, refs)
    else:
        scores = lira_scores(model, candidates, refs, online=attack == "lira")
    return evaluate_attack(attack, scores, labels, n_reference=n_reference, augment=augment)


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def dp_bound_holds(
    result: MembershipResult, epsilon: float, delta: float, confidence: float = 0.95
) -> bool:
    """Whether the ROC is consistent with (ε, δ)-DP: at every point, the lower confidence
    bound on TPR is at most e^ε times the upper bound on FPR, plus δ.

    Clopper-Pearson intervals over the member and non-member counts, Bonferroni-corrected
    over the ROC points: an empirical ROC point picks its threshold after seeing the
    scores, so its raw rates overstate what the attack can do.
    """
    alpha = (1 - confidence) / max(len(result.roc), 1)
    for fpr, tpr in result.roc:
        tpr_low, _ = _clopper_pearson(round(tpr * result.n_members), result.n_members, alpha)
        _, fpr_high = _clopper_pearson(round(fpr * result.n_nonmembers), result.n_nonmembers, alpha)
        if tpr_low > np.exp(epsilon) * fpr_high + delta:
            return False
    return True


def audit_guarantee(
    result: MembershipResult, epsilon: float | None = None, delta: float = 1e-5, step: str = ""
):
    """The ledger entry: an audit of training-data privacy with the attack's figures.

    With a claimed ε: ``supported`` if the ROC is consistent with the bound e^ε·FPR + δ
    (:func:`dp_bound_holds`, 95% confidence), else ``violated``. Without one: ``violated``
    when the attack clearly beats chance (TPR at 0.1% FPR above 1%, or AUC above 0.6),
    else ``supported``.
    """
    from veil.core.guarantees import Guarantee

    tpr3 = result.tpr_at["0.001"]
    if epsilon is not None:
        ok = dp_bound_holds(result, epsilon, delta)
        claim = (
            f"measured leakage stays under the ({epsilon:g}, {delta:g})-DP bound"
            if ok
            else (f"measured leakage exceeds the ({epsilon:g}, {delta:g})-DP bound")
        )
    else:
        ok = tpr3 <= 0.01 and result.auc <= 0.6
        claim = "no clear membership leakage found" if ok else "the model leaks membership"
    return Guarantee(
        guarantee="audit",
        tests="training-data",
        mechanism=f"membership inference ({result.attack})",
        claim=f"{claim}: AUC {result.auc:.3f}, TPR {tpr3:.2%} at 0.1% FPR",
        threat_model="black-box attacker with confidences, who knows the data distribution and "
        "the training recipe (trains reference models)",
        parameters={
            "attack": result.attack,
            "members": result.n_members,
            "nonmembers": result.n_nonmembers,
            **result.details,
        },
        numbers={
            "auc": result.auc,
            "tpr_at_0.1%_fpr": tpr3,
            "tpr_at_1%_fpr": result.tpr_at["0.01"],
            "advantage": result.advantage,
            **({"epsilon": epsilon} if epsilon else {}),
        },
        evidence={
            "roc": result.roc,
            "most_exposed": result.exposed,
            **({"dp_bound": {"epsilon": epsilon, "delta": delta}} if epsilon else {}),
        },
        status="supported" if ok else "violated",
        step=step,
    )


def audit_saved_model(
    path,
    data: str | None = None,
    attack: str = "lira",
    n_reference: int = 16,
    limit: int = 1000,
    recipe: dict | None = None,
    epsilon: float | None = None,
    delta: float = 1e-5,
    step: str = "",
    quiet: bool | None = None,
    augment: int = 0,
    workers: int = 1,
):
    """Audit a veil model file: members from the examples it was trained on (its header says
    which), non-members from the test split (``limit`` of each), reference models trained
    by ``recipe`` (``fit`` keywords)."""
    from veil.core import data as data_mod
    from veil.core.io import load_model
    from veil.core.train import fit

    loaded = load_model(path)
    name = loaded.data_name(data)
    train, test = data_mod.load(name, "train"), data_mod.load(name, "test")
    picked = loaded.extra.get("train_subset") or {}
    if picked.get("limit") is not None:  # the model saw only these: they are the members
        train = train.subset(data_mod.sample_indices(len(train), picked["limit"], picked["seed"]))
    members = train.subset(data_mod.sample_indices(len(train), limit, 1))
    nonmembers = test.subset(data_mod.sample_indices(len(test), limit, 2))
    settings = {"epochs": 10, "lr": 0.05, "batch_size": 64, **(recipe or {})}

    def train_fn(ds):
        net = loaded.spec.build()
        fit(net, ds, quiet=True, **settings)
        return net

    result = membership(
        loaded.model,
        members,
        nonmembers,
        attack,
        train_fn,
        n_reference,
        quiet=quiet,
        augment=augment,
        workers=workers,
    )
    return result, audit_guarantee(result, epsilon, delta, step)
