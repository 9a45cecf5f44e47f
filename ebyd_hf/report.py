"""What a defense run leaves for people: report.json, plots, and the purified model's card."""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REMOVAL_NAMES = {
    "trigger_unlearn": "trigger search and unlearning",
    "recover_prune": "Recover-Pruning",
    "prune_finetune": "Recover-Pruning and fine-tuning",
    "finetune": "fine-tuning",
}
EXPOSURE_NAMES = {
    "cul": "Clean Unlearning",
    "cft": "Confusion Fine-Tuning",
    "prune": "activation pruning",
    "awp": "adversarial weight perturbation",
}
METRIC_COLUMNS = (("ca", "CA"), ("asr", "ASR"), ("clean_target_rate", "CTR"), ("target_share", "target share"))


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def metrics_table(metrics: dict[str, dict]) -> str:
    """A Markdown table: one row per model state (suspect / exposed / purified / ...), one column per metric."""
    cols = [(key, title) for key, title in METRIC_COLUMNS if any(key in row for row in metrics.values())]
    lines = ["| model | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in metrics.items():
        lines.append(f"| {name} | " + " | ".join(_pct(row.get(key)) for key, _ in cols) + " |")
    return "\n".join(lines)


def plot_exposure(trace: list[dict], path: str, *, title: str = "Clean Unlearning") -> None:
    """Defense CA (and probe ASR, when traced) per evaluation of the exposure run."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = [t["epoch"] for t in trace]
    ax.plot(epochs, [t.get("ca") for t in trace], "o-", label="clean accuracy (defense data)")
    if any("asr" in t for t in trace):
        ax.plot(epochs, [t.get("asr") for t in trace], "s-", label="attack success rate (probe)")
    if trace and "floor" in trace[-1]:
        ax.axhline(trace[-1]["floor"], color="grey", ls=":", label="stop floor")
    ax.set(xlabel="exposure epoch", ylabel="rate", ylim=(-0.02, 1.02), title=title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_masks(masks: dict, threshold: float, path: str) -> None:
    """Histogram of learned mask values, with the pruning threshold."""
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in masks.values()])
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.hist(values, bins=50, range=(0, 1), color="tab:blue")
    ax.axvline(
        threshold, color="tab:red", ls="--", label=f"threshold {threshold:.2f}: {(values <= threshold).sum()} pruned"
    )
    ax.set(xlabel="mask value", ylabel="units", title=f"Recovery masks ({len(values)} units)", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, masks: dict | None, output_dir: str, *, trigger=None) -> None:
    """``report.json`` and ``plots/exposure.png`` in ``output_dir``, + ``plots/masks.png`` when masks were pruned
    and ``plots/reversed_trigger_{mask,pattern,trigger}.png`` for a reversed image ``trigger``."""
    plots = os.path.join(output_dir, "plots")
    os.makedirs(plots, exist_ok=True)
    with open(os.path.join(output_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot_exposure(report["exposure"]["trace"], os.path.join(plots, "exposure.png"))
    if masks is not None and "pruning" in report:
        plot_masks(masks, report["pruning"]["threshold"], os.path.join(plots, "masks.png"))
    if trigger is not None:
        trigger.save_pngs(plots, prefix="reversed_trigger_")


def _reversal_lines(t: dict) -> list[str]:
    label, (h, w) = t["label"], t["mask_size"]
    found = (
        f"- Neural Cleanse reversed a trigger for label **{label}** on the suspect: mask L1 norm "
        f"{t['mask_l1_norm']:.1f} ({_pct(t['mask_share'])} of the {h}×{w} input), sending "
        f"{_pct(t['attack_rate'])} of the clean defense images it was optimised on to label {label}"
    )
    if not t["reached_threshold"]:
        found += (
            "; it **did not reach** the attack-rate threshold, so this is its best attempt rather than a trigger "
            "(unlearned anyway: the label came from the exposure)"
        )
    lines = [
        found,
        f"- the reversed trigger for label **{label}** was unlearned: fine-tuned on the clean defense images plus "
        "copies with it stamped, true labels",
    ]
    rounds = t["rounds"]
    last = (rounds[0]["blocks"] or [{}])[-1]
    if last.get("transfer_rate") is not None:
        lines.append(
            f"- afterwards it sends {_pct(last['transfer_rate'])} of {t['held_out_images']} held-out clean non-target "
            f"images to label {label} (suspect: {_pct(t['transfer_rate_before'])}), after "
            f"{len(rounds[0]['blocks'])} unlearning block(s)"
        )
    for r in rounds[1:]:
        if r["blocks"]:
            lines.append(
                f"- round {r['round'] + 1}: reversed again on the unlearned model (mask L1 norm "
                f"{r['mask_l1_norm']:.1f}, moving {_pct(r['transfer_rate_before'])} of the held-out images); "
                f"unlearned too, down to {_pct(r['blocks'][-1]['transfer_rate'])}"
            )
    if t["stop_reason"]:
        lines.append(f"- reversal stopped at {t['stop_reason']}")
    return lines


def _removal_lines(report: dict) -> list[str]:
    if "reversed_trigger_unlearning" in report:
        return _reversal_lines(report["reversed_trigger_unlearning"])
    if "trigger_unlearning" in report:
        t = report["trigger_unlearning"]
        if not t["triggers"]:
            return [
                f"- trigger search ({len(t['rounds'])} round(s)): **no trigger word found**; the model is unchanged"
            ]
        words = ", ".join(f"`{w}`" for w in t["triggers"])
        lines = [
            f"- trigger words for label **{t.get('label')}** found and unlearned ({len(t['rounds'])} search "
            f"round(s)): {words}",
            "- unlearning: fine-tuned on the clean defense rows plus copies with those words inserted, true labels",
        ]
        last = (t.get("unlearning_blocks") or [{}])[-1]
        if last.get("max_flip_rate") is not None:
            lines.append(
                f"- afterwards the found words flip at most {_pct(last['max_flip_rate'])} of {last['rows']} held-out "
                "clean rows to the backdoor label"
            )
        return lines
    lines = []
    if "pruning" in report:
        pruning = report["pruning"]
        lines.append(
            f"- pruned {pruning['pruned_units']} of {pruning['total_units']} normalisation units "
            f"(mask <= {pruning['threshold']:.2f}) in {pruning['masked_layers']} layers"
        )
    if report.get("removal") == "prune_finetune":
        lines.append("- then fine-tuned on the clean defense rows with the pruned units held off")
    if report.get("removal") == "finetune":
        lines.append("- removal: plain fine-tuning on the clean defense rows")
    return lines


def card_body(report: dict, *, suspect: str, dataset: str) -> str:
    """Model-card text: what was done to which model, and the measured table."""
    exposure = report["exposure"]
    bem = exposure["bem"]
    method = REMOVAL_NAMES.get(report.get("removal", "recover_prune"), report.get("removal"))
    if "reversed_trigger_unlearning" in report:
        method = "Neural Cleanse trigger reversal and unlearning"
    lines = [
        f"This model is `{suspect}` after the **Expose Before You Defend** defense "
        f"({EXPOSURE_NAMES[exposure.get('method', 'cul')]} + {method}, arXiv:2410.19427) run with `ebyd_hf` "
        f"on `{dataset}`.",
        "",
        f"- backdoor label found: **{report['label_found']}** (the exposed model predicted it for "
        f"{_pct(report['label_share'])} of clean defense inputs)",
        f"- exposure: {exposure['steps']} steps; stopped because "
        f"{exposure['stop_reason'] or 'the epoch budget ran out'}" + (f"; BEM {bem:.3f}" if bem is not None else ""),
        *_removal_lines(report),
    ]
    if report.get("metrics"):
        lines += [
            "",
            "## Measured",
            "",
            metrics_table(report["metrics"]),
            "",
            "CA: clean accuracy. ASR: triggered inputs of other classes predicted as the target. CTR: clean "
            "inputs of other classes predicted as the target (the floor an ASR is compared with).",
        ]
    lines += ["", "The full report is in `report.json`; plots are in `plots/`."]
    return "\n".join(lines)


def exposure_table(rows: dict[str, dict]) -> str:
    """A Markdown table comparing exposure methods: BEM, epochs, and the exposed model's CA / ASR / top label."""
    lines = [
        "| method | BEM | epochs | stop | CA (exposed) | ASR (exposed) | top label | top share | seconds |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for method, row in rows.items():
        last = row["trace"][-1] if row["trace"] else {}
        bem = row.get("bem")
        lines.append(
            f"| {method} | {'–' if bem is None else f'{bem:.3f}'} | {len(row['trace']) - 1} | "
            f"{'floor' if row.get('stop_reason') else 'budget'} | {_pct(last.get('test_ca', last.get('ca')))} | "
            f"{_pct(last.get('asr'))} | {last.get('top_label', '–')} | {_pct(last.get('top_share'))} | "
            f"{row.get('seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def plot_exposure_comparison(traces: dict[str, list[dict]], path: str, *, title: str = "Backdoor exposure") -> None:
    """CA and ASR per exposure epoch (pruning: per rate step), one panel per method."""
    fig, axes = plt.subplots(1, len(traces), figsize=(3.6 * len(traces), 3.3), squeeze=False, sharey=True)
    for ax, (method, trace) in zip(axes[0], traces.items(), strict=True):
        epochs = [t["epoch"] for t in trace]
        ca_key = "test_ca" if all("test_ca" in t for t in trace) else "ca"
        ax.plot(epochs, [t.get(ca_key) for t in trace], "o-", label="CA")
        if any("asr" in t for t in trace):
            ax.plot(epochs, [t.get("asr") for t in trace], "s-", label="ASR")
        ax.plot(epochs, [t.get("top_share") for t in trace], ":", color="grey", label="top share")
        ax.set(title=EXPOSURE_NAMES.get(method, method), xlabel="epoch" if method != "prune" else "rate step")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("rate")
    axes[0][-1].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_strip(results: dict, path: str, *, title: str = "STRIP entropy") -> None:
    """Entropy histograms of clean vs triggered inputs, one panel per model (e.g. original / exposed)."""
    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        top = max(result.clean_entropy.max(), result.triggered_entropy.max(), 1e-3)
        bins = np.linspace(0, top, 30)
        ax.hist(result.clean_entropy, bins=bins, alpha=0.6, label="clean", color="tab:blue")
        ax.hist(result.triggered_entropy, bins=bins, alpha=0.6, label="triggered", color="tab:red")
        ax.set(title=f"{name}: AUROC {100 * result.auroc:.1f}%", xlabel="mean entropy (bits)", ylabel="inputs")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
