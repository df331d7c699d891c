"""Evaluation: patient-grouped cross-validation, metrics, statistics, reports, the benchmark.

splits (folds) → crossval (out-of-fold predictions, via adapter → rimscope.train) → summarise
(metrics, stats) → report (results.json/.md, report.html with figures); cli = `rimscope
evaluate` over `pipeline.evaluate` (= `rimscope.evaluate(...)`), benchmark = `rimscope benchmark`.
"""
from ..commands import callable_package

callable_package(__name__, "rimscope.evaluate.pipeline:evaluate")  # rimscope.evaluate(...) runs the command
