"""Evaluation and the harness: metrics over a split, a trained run loaded as `Run`, suites
(bench), their results, reports and plots. Imports training and the core."""
