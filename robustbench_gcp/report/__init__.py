"""Tables (tabulate) and plots (matplotlib) of the zoo and of stored runs, and run selection."""

from .plots import (
    PLOT_FORMATS,
    plot_attacks,
    plot_corruptions,
    plot_learning_curves,
    plot_path,
    plot_perturbations,
    read_training_log,
)
from .runs import ReportError, run_labels, select_runs
from .tables import (
    TABLE_FORMATS,
    attack_tables,
    catalog_table,
    comparison_json,
    comparison_junit,
    comparison_table,
    corruption_table,
    perturbation_table,
    robustness_table,
    runs_table,
    tidy_csv,
)

__all__ = [
    "PLOT_FORMATS", "ReportError", "TABLE_FORMATS", "attack_tables", "catalog_table", "comparison_json",
    "comparison_junit", "comparison_table", "corruption_table", "perturbation_table", "plot_attacks",
    "plot_corruptions", "plot_learning_curves", "plot_path", "plot_perturbations", "read_training_log",
    "robustness_table", "run_labels", "runs_table", "select_runs", "tidy_csv",
]
