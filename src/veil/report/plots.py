"""Plots for the report, rendered with matplotlib (Agg) and embedded as base64 PNG.

A plot function takes a Ledger and returns Figures; packages register theirs with
:func:`register_plot` under a section (a guarantee kind, ``audit`` or ``training``). A figure
drawn from one step's entries or records names that ``step`` and is shown in the step's part
of the report; a figure across steps (``step=""``) is shown after the steps.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

from veil.core.guarantees import Ledger

SECTIONS = ("training-data", "input", "output", "model", "audit", "training")


@dataclass(frozen=True)
class Figure:
    """A titled PNG image, base64-encoded for embedding in HTML."""

    title: str
    png_base64: str
    step: str = ""


_PLOTS: dict[str, list[Callable[[Ledger], list[Figure]]]] = {s: [] for s in SECTIONS}


def register_plot(section: str):
    """Register ``fn(ledger) -> list[Figure]`` to draw in ``section`` of the report."""
    if section not in SECTIONS:
        raise ValueError(f"unknown report section {section!r}; use one of {SECTIONS}")

    def wrap(fn):
        _PLOTS[section].append(fn)
        return fn

    return wrap


def figures_for(section: str, ledger: Ledger) -> list[Figure]:
    """Every registered plot for ``section``, drawn from ``ledger``."""
    return [fig for fn in _PLOTS[section] for fig in fn(ledger)]


def all_figures(ledger: Ledger) -> list[Figure]:
    """Every registered plot of every section, drawn from ``ledger``."""
    return [fig for section in SECTIONS for fig in figures_for(section, ledger)]


def to_figure(fig, title: str, step: str = "") -> Figure:
    """Render a matplotlib figure to an embedded PNG (of ``step``, if one) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure(title, base64.b64encode(buf.getvalue()).decode(), step)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@register_plot("training")
def training_curves(ledger: Ledger) -> list[Figure]:
    """Loss and accuracy per epoch for every training record that has curves."""
    out = []
    for rec in ledger.records:
        curves = rec.curves
        if rec.kind != "train" or not curves:
            continue
        plt = _pyplot()
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
        for name, values in curves.items():
            epochs = range(1, len(values) + 1)
            if name.endswith("loss"):
                ax_loss.plot(epochs, values, marker="o", ms=3, label=name)
            elif name.endswith("accuracy"):
                ax_acc.plot(epochs, values, marker="o", ms=3, label=name)
        for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle(f"step {rec.step}")
        out.append(to_figure(fig, f"Training curves: {rec.step}", rec.step))
    return out


@register_plot("training")
def collab_rounds(ledger: Ledger) -> list[Figure]:
    """Collaborative runs: test accuracy per round (global model and each participant's),
    with the centralized and standalone baselines; megabytes uploaded per round."""
    out = []
    for rec in ledger.records:
        if rec.kind != "collab" or not rec.curves:
            continue
        plt = _pyplot()
        fig, (ax_acc, ax_bytes) = plt.subplots(1, 2, figsize=(8, 3))
        rounds = range(1, len(rec.curves["global_accuracy"]) + 1)
        for name, values in rec.curves.items():
            if name.startswith("participant_"):
                ax_acc.plot(rounds, values, lw=0.8, alpha=0.5, color="grey")
        ax_acc.plot(rounds, rec.curves["global_accuracy"], marker="o", ms=3, label="global")
        for key, style in (("centralized_accuracy", "--"), ("standalone_accuracy", ":")):
            value = rec.details.get("baselines", {}).get(key)
            if value is not None:
                ax_acc.axhline(value, ls=style, color="black", label=key.split("_")[0])
        ax_bytes.bar(rounds, [b / 1e6 for b in rec.curves.get("bytes_uploaded", [])])
        ax_acc.set(xlabel="round (grey: each participant)", ylabel="test accuracy")
        ax_bytes.set(xlabel="round", ylabel="MB uploaded")
        ax_acc.legend(fontsize=8)
        for ax in (ax_acc, ax_bytes):
            ax.grid(alpha=0.3)
        fig.suptitle(f"step {rec.step}")
        fig.tight_layout()
        out.append(to_figure(fig, f"Collaborative training: {rec.step}", rec.step))
    return out


def _evidence_curves(section: str):
    """Plot every ``*_curve`` evidence (a list of [x, y] points) of the entries in ``section``."""

    def plot(ledger: Ledger) -> list[Figure]:
        out = []
        for entry in ledger.entries:
            in_section = entry.guarantee == section or (section == "audit" and entry.tests)
            if not in_section or (section != "audit" and entry.guarantee == "audit"):
                continue
            for key, points in entry.evidence.items():
                if not key.endswith("_curve") or not points:
                    continue
                plt = _pyplot()
                fig, ax = plt.subplots(figsize=(5, 3))
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", ms=3)
                ax.set_xlabel("step")
                ax.set_ylabel(key.removesuffix("_curve"))
                ax.grid(alpha=0.3)
                title = f"{entry.mechanism} ({entry.step or 'run'}): {key.replace('_', ' ')}"
                out.append(to_figure(fig, title, entry.step))
        return out

    return plot


for _section in ("training-data", "input", "output", "model", "audit"):
    register_plot(_section)(_evidence_curves(_section))


@register_plot("training-data")
def privacy_utility(ledger: Ledger) -> list[Figure]:
    """Test accuracy against ε for every entry that reports both: the trade-off."""
    points = [
        (e.numbers["epsilon"], e.numbers["test_accuracy"], e.step or e.mechanism)
        for e in ledger.entries
        if e.guarantee == "training-data" and {"epsilon", "test_accuracy"} <= e.numbers.keys()
    ]
    if not points:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for eps, acc, label in points:
        ax.scatter([eps], [acc])
        ax.annotate(label, (eps, acc), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("ε (at the entry's δ)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    return [to_figure(fig, "Privacy/utility trade-off: accuracy against ε")]


def _panels(ledger: Ledger, key: str, keep, size: tuple[float, float]):
    """(entry, its ``evidence[key]``, figure, axes) for each entry that has ``key`` and that
    ``keep(entry)`` accepts: one new single-axes figure each."""
    for entry in ledger.entries:
        value = entry.evidence.get(key)
        if value and keep(entry):
            fig, ax = _pyplot().subplots(figsize=size)
            yield entry, value, fig, ax


@register_plot("input")
def stego_carriers(ledger: Ledger) -> list[Figure]:
    """PSNR of each cover that carries an image share, against the 45 dB mark (1 bit per
    channel is expected to stay above it)."""
    out = []
    panels = _panels(ledger, "carriers", lambda e: e.guarantee == "input", (5, 2.8))
    for e, carriers, fig, ax in panels:
        ax.bar([f"share {c['share']}" for c in carriers], [c["psnr_db"] for c in carriers])
        ax.axhline(45.0, ls="--", color="black", label="45 dB")
        ax.set_ylabel("PSNR of stego vs cover (dB)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(to_figure(fig, f"Shares hidden in covers ({e.step or 'sharing'}): PSNR", e.step))
    return out


@register_plot("audit")
def membership_roc(ledger: Ledger) -> list[Figure]:
    """ROC curves of membership attacks on log-log axes, with the DP bound when one is claimed."""
    entries = [e for e in ledger.entries if e.guarantee == "audit" and e.evidence.get("roc")]
    if not entries:
        return []
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    grid = np.geomspace(1e-4, 1, 200)
    ax.plot(grid, grid, ls=":", color="grey", label="chance")
    for e in entries:
        fpr, tpr = zip(*e.evidence["roc"], strict=True)
        ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=f"{e.mechanism} ({e.step})")
        bound = e.evidence.get("dp_bound")
        if bound:
            ax.plot(
                grid,
                np.minimum(1, np.exp(bound["epsilon"]) * grid + bound["delta"]),
                ls="--",
                label=f"DP bound ε={bound['epsilon']:g}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return [to_figure(fig, "Membership inference ROC (log-log)")]


@register_plot("audit")
def backdoor_scans(ledger: Ledger) -> list[Figure]:
    """Neural Cleanse scans: anomaly index per label (threshold 2), and the reverse-engineered
    trigger (mask × pattern) of each label it flagged."""
    out = []
    for entry in ledger.entries:
        anomaly = entry.evidence.get("anomaly_index")
        if entry.mechanism != "Neural Cleanse" or not anomaly:
            continue
        triggers = entry.evidence.get("triggers", {})
        plt = _pyplot()
        fig, axes = plt.subplots(1, 1 + len(triggers), figsize=(4 + 2 * len(triggers), 3))
        axes = axes if len(triggers) else [axes]
        axes[0].bar(range(len(anomaly)), anomaly)
        axes[0].axhline(2.0, ls="--", color="black")
        axes[0].set(xlabel="label", ylabel="anomaly index")
        for ax, (label, image) in zip(axes[1:], triggers.items(), strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"label {label}", fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        out.append(
            to_figure(fig, f"Backdoor scan ({entry.step or 'scan'}): Neural Cleanse", entry.step)
        )
    return out


@register_plot("audit")
def strip_entropies(ledger: Ledger) -> list[Figure]:
    """STRIP: histograms of the mean entropy of clean and tested inputs, with the threshold
    (tested inputs left of it look triggered)."""
    out = []
    panels = _panels(ledger, "entropy_histogram", lambda e: e.mechanism == "STRIP", (5, 3))
    for entry, hist, fig, ax in panels:
        edges = hist["edges"]
        for name, style in (("clean", "-"), ("tested", "--")):
            ax.stairs(hist[name], edges, ls=style, label=f"{name} inputs")
        ax.axvline(hist["threshold"], color="black", lw=1, label="threshold")
        ax.set(xlabel="mean entropy of blended copies", ylabel="inputs")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out.append(to_figure(fig, f"STRIP entropies ({entry.step or 'strip'})", entry.step))
    return out


@register_plot("audit")
def reconstructions(ledger: Ledger) -> list[Figure]:
    """What a reconstruction audit got back (gradient or model inversion): its best images,
    each titled with its score. The report then holds whatever the attack recovered."""
    import numpy as np

    out = []
    for entry in ledger.entries:
        images = entry.evidence.get("images")
        if not isinstance(images, list) or not images:
            continue
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(images), figsize=(1.7 * len(images), 2), squeeze=False)
        for ax, image in zip(axes[0], images, strict=True):
            ax.imshow(np.asarray(image["pixels"], dtype=np.uint8), cmap="gray", vmin=0, vmax=255)
            ax.set_title(image["title"], fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        out.append(to_figure(fig, f"{entry.mechanism} ({entry.step or 'audit'})", entry.step))
    return out
