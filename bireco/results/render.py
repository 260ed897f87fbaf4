"""The table's rows as GitHub Markdown, booktabs LaTeX and CSV (nothing here computes a number)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable

from bireco.results.records import COLUMNS
from bireco.results.table import MIN_PAIRS, Row

LABELS = {"paper": "↳ paper", "ours_minus_paper": "↳ ours − paper"}
TEX_LABELS = {"paper": "paper", "ours_minus_paper": "ours $-$ paper"}
INCLUDES_ZERO = "†"


def _num(v: float | None, signed: bool, minus: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = round(v, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not signed or v == 0:
        return f"{v:.2f}"
    return f"{v:+.2f}".replace("-", minus)


def _cells(row: Row, minus: str = "-", pm: str = "±", dagger: str = INCLUDES_ZERO) -> list[str]:
    """Numbers of one row: mean ± sd for our rows, Δ [interval] (dagger: includes 0) for deltas."""
    out = []
    for c in COLUMNS:
        v = row.values.get(c)
        cell = _num(v, row.kind in ("delta", "ours_minus_paper"), minus)
        if row.kind == "ours" and row.sd.get(c) is not None:
            cell += f" {pm} {_num(row.sd[c], False)}"
        d = row.intervals.get(c)
        if row.kind == "delta" and d is not None:
            cell += f" [{_num(d.low, True, minus)}, {_num(d.high, True, minus)}]" + (dagger if d.includes_zero else "")
        out.append(cell)
    return out


LEGEND = (
    "mean ± sd over seeds; Δ = pipeline − baseline with a paired 95% bootstrap interval (seeds, then the column's "
    f"tasks, resampled; none from fewer than {MIN_PAIRS} seed × task pairs); {INCLUDES_ZERO} the interval includes 0."
)


def _note(row: Row) -> str:
    return f"{row.kind}: {row.reason}" if row.kind in ("missing", "failed") else row.reason


def _head(row: Row, labels: dict[str, str], esc: Callable[[str], str]) -> list[str]:
    """Model and pipeline cells; derived rows leave the model blank and name themselves in the pipeline cell."""
    if row.kind == "delta":
        return ["", esc(row.pipeline)]
    return ["", labels[row.kind]] if row.kind in labels else [esc(row.model), esc(row.pipeline)]


def _md_escape(s: str) -> str:
    return " ".join(s.split()).replace("|", r"\|")


def render_markdown(rows: list[Row], title: str | None = None) -> str:
    """GitHub Markdown: the table to paste into the README / issue, derived rows labelled in the pipeline cell."""
    lines = [f"## {title}", ""] if title else []
    lines += [
        "| model | pipeline | " + " | ".join(COLUMNS) + " | note |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for row in rows:
        cells = [*_head(row, LABELS, _md_escape), *_cells(row), _md_escape(_note(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", LEGEND]) + "\n"


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters in free text (model names, reasons)."""
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
    table |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--"}
    table |= {"−": "$-$", "Δ": r"$\Delta$", "↳": "", "±": r"$\pm$", "†": r"$^\dagger$"}
    return "".join(table.get(ch, ch) for ch in s)


def render_latex(rows: list[Row], title: str | None = None) -> str:
    """booktabs tabular (needs \\usepackage{booktabs}); a rule between models."""
    lines = [f"% {latex_escape(title)}"] if title else []
    lines += [r"\begin{tabular}{ll" + "r" * len(COLUMNS) + "l}", r"\toprule"]
    lines.append(" & ".join(["Model", "Pipeline", *COLUMNS, "Note"]) + r" \\")
    lines.append(r"\midrule")
    prev = None
    for row in rows:
        if prev is not None and row.model != prev:
            lines.append(r"\midrule")
        prev = row.model
        cells = [latex_escape(c) for c in _cells(row, minus="−", pm="±", dagger="†")]
        note = latex_escape(" ".join(_note(row).split()))
        lines.append(" & ".join([*_head(row, TEX_LABELS, latex_escape), *cells, note]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    """One line per row (derived rows included); numbers with 2 decimals, blank where there is none."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")

    def num(v: float | None) -> str:
        return "" if v is None else f"{round(v, 2) + 0.0:.2f}"

    w.writerow(
        [
            "kind",
            "model",
            "pipeline",
            "n_seeds",
            "seeds",
            *COLUMNS,
            *(f"{c}_sd" for c in COLUMNS),
            *(f"{c}_lo" for c in COLUMNS),
            *(f"{c}_hi" for c in COLUMNS),
            "reason",
            "run_dir",
        ]
    )
    for row in rows:
        ivs = [row.intervals.get(c) for c in COLUMNS]
        w.writerow(
            [
                row.kind,
                row.model,
                row.pipeline,
                len(row.seeds) if row.seeds else "",
                " ".join(map(str, row.seeds)),
                *(num(row.values.get(c)) for c in COLUMNS),
                *(num(row.sd.get(c)) for c in COLUMNS),
                *(num(d.low if d else None) for d in ivs),
                *(num(d.high if d else None) for d in ivs),
                " ".join(row.reason.split()),
                row.run_dir,
            ]
        )
    return buf.getvalue()
