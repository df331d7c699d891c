"""Evaluation: patient-grouped cross-validation, metrics, statistics, reports, the benchmark.

splits (folds) → crossval (out-of-fold predictions, via adapter → rimscope.train) → summarise
(metrics, stats) → report (results.json/.md, report.html with figures); cli = `rimscope
evaluate`, benchmark = `rimscope benchmark`. Only rimscope.cli, predict and demo import this.
"""
