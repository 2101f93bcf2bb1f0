"""Modulation heatmaps that answer "which heads does this style (or this input) move?".

Absolute strengths hide the answer: every style's row looks alike because a head's size dominates (e.g.
|gamma_k| of one head spans 1.84-1.99 across styles). So each figure puts first the deviation from the
mean across styles (diverging colours, 0 = the average style), and keeps the absolute strength beside it.
Drawn by lavis-gated-plots (per style, from <split>_modulation.json) and the web demo (one input, against
the mean over the run's test images asked the same question); this module imports matplotlib and numpy
only (no lavis, no torch: see lavis_gated/__init__.py).
"""

import numpy as np
from matplotlib.figure import Figure

MAX_ANNOTATED_CELLS = 120
DEVIATION_LABEL = "strength - mean over styles"
ABSOLUTE_LABEL = "mean modulation strength"
INPUT_ABSOLUTE_LABEL = "modulation strength"
INPUT_DEVIATION_LABEL = "this input - reference mean"


def deviation_from_mean(means):
    """means (S, ...) per style -> (S, ...) each style's difference from the unweighted mean over styles."""
    means = np.asarray(means, dtype=np.float64)
    return means - means.mean(axis=0, keepdims=True)


def cell_text(value, signed, scale):
    """Two decimals (deviations with their sign, never -0.00), or two significant digits when the panel's
    largest magnitude `scale` is below 0.05 (e.g. deviations of 1e-5 are not all written 0.00)."""
    sign = "+" if signed else ""
    if 0 < scale < 0.05:
        return f"{value:{sign}.1e}"
    if round(float(value), 2) == 0:
        return "0.00"
    return f"{value:{sign}.2f}"


def heatmap(fig, ax, matrix, row_labels, layers, num_heads, colorbar_label, diverging):
    """Draw matrix (rows, L * H) on ax, heads grouped by Q-Former layer, with a labelled colour bar.

    diverging: a red-blue scale symmetric about 0 (deviations); else viridis from 0 (strengths)."""
    if diverging:
        limit = float(np.abs(matrix).max()) or 1e-6
        image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).set_label(colorbar_label, fontsize=8)
    columns = len(layers) * num_heads
    for boundary in range(1, len(layers)):
        ax.axvline(boundary * num_heads - 0.5, color="black" if diverging else "white", linewidth=2)
    ax.set_xticks(range(columns), [str(h) for _ in layers for h in range(num_heads)], fontsize=7)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [(i + 0.5) * num_heads - 0.5 for i in range(len(layers))], [f"Q-Former layer {k}" for k in layers]
    )
    top.tick_params(length=0, labelsize=8)
    if matrix.size <= MAX_ANNOTATED_CELLS:
        low, high = image.get_clim()
        scale = float(np.abs(matrix).max())
        for (row, col), value in np.ndenumerate(matrix):
            # dark text on the light middle of either scale, light text on its dark ends
            shade = (value - low) / ((high - low) or 1.0)
            dark = 0.25 < shade < 0.75 if diverging else shade > 0.6
            ax.text(
                col,
                row,
                cell_text(value, diverging, scale),
                ha="center",
                va="center",
                fontsize=6,
                color="black" if dark else "white",
            )
    return image


def style_modulation_figure(summary, source=""):
    """One row of panels per modulated parameter: each style's deviation from the mean over styles (left)
    and its mean strength (right); rows = styles, columns = Q-Former layer x head."""
    styles = list(summary["styles"])
    means = np.array([summary["styles"][s]["mean"] for s in styles])  # (S, L, P, H)
    num_styles, num_layers, num_params, num_heads = means.shape
    deviation = deviation_from_mean(means)
    labels = [f"{s} (n={summary['styles'][s]['count']})" for s in styles]
    layers = summary["qformer_layers"]
    width = min(max(6.0, 0.45 * num_layers * num_heads + 3), 14)
    fig = Figure(figsize=(2 * width, num_params * (0.35 * num_styles + 1.8)))
    axes = fig.subplots(num_params, 2, squeeze=False)
    for p, (left, right) in enumerate(axes):
        name = summary["parameters"][p]
        for ax, values, label, diverging, what in (
            (left, deviation, DEVIATION_LABEL, True, "deviation from the mean over styles"),
            (right, means, ABSOLUTE_LABEL, False, "absolute"),
        ):
            matrix = values[:, :, p, :].reshape(num_styles, num_layers * num_heads)
            heatmap(fig, ax, matrix, labels, layers, num_heads, f"{label}, {name}", diverging)
            ax.set_title(f"{name}: {what}", fontsize=10, pad=18)
    for ax in axes[-1]:
        ax.set_xlabel("head (grouped by cross-attention layer)")
    fig.suptitle(
        f"{summary['gating_type']} modulation per style{f' ({source})' if source else ''}: which heads "
        "does each style move?\nleft: deviation from the average style (red = moved more, blue = less); "
        "right: absolute strength",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def input_modulation_figure(strength, parameters, layers, reference=None, reference_name=""):
    """One input's strength (L, P, H) as parameter rows x (layer, head) columns; with reference (L, P, H),
    e.g. the mean over other images asked the same question, its deviation from it comes first."""
    strength = np.asarray(strength, dtype=np.float64)
    num_layers, num_params, num_heads = strength.shape
    panels = [(strength, INPUT_ABSOLUTE_LABEL, False, "this input's modulation strength")]
    if reference is not None:
        deviation = strength - np.asarray(reference, dtype=np.float64)
        title = f"deviation from the reference{f' ({reference_name})' if reference_name else ''}"
        panels.insert(0, (deviation, INPUT_DEVIATION_LABEL, True, title))
    width = min(max(5.5, 0.45 * num_layers * num_heads + 3), 12)
    fig = Figure(figsize=(width, len(panels) * (0.4 * num_params + 1.9)))
    for ax, (values, label, diverging, title) in zip(
        fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels
    ):
        matrix = values.transpose(1, 0, 2).reshape(num_params, num_layers * num_heads)
        heatmap(fig, ax, matrix, list(parameters), layers, num_heads, label, diverging)
        ax.set_title(title, fontsize=10, pad=18)
        ax.set_xlabel("head (grouped by cross-attention layer)", fontsize=8)
    fig.tight_layout()
    return fig
