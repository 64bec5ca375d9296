"""The privacy report: one self-contained HTML page and a terminal summary, built from a Ledger.

``write_html(ledger, "report.html")`` renders a section per guarantee (status, mechanisms,
parameters, threat models, evidence, plots), the audits, and training results.
``summary_table(ledger)`` gives the same verdicts as a rich table. Packages add plots for
their evidence with :func:`register_plot`.
"""

from veil.report.html import render_html, write_html
from veil.report.plots import Figure, register_plot
from veil.report.summary import records_table, summary_rows, summary_table

__all__ = [
    "Figure",
    "records_table",
    "register_plot",
    "render_html",
    "summary_rows",
    "summary_table",
    "write_html",
]
