"""Statistics of evaluations: pure numpy/scikit-learn, no report or model code.

* :mod:`benchmark.stats.bootstrap` -- the one resampler: bootstrap weightings of the test
  examples (the same random stream for every caller with the same seed) and percentile intervals;
* :mod:`benchmark.stats.metrics` -- AUROC/F1/precision/recall with bootstrap CIs, decision rules
  chosen on the validation split, :func:`~benchmark.stats.metrics.macro_auroc`;
* :mod:`benchmark.stats.paired` -- paired differences between methods on the same test examples.

Display order (which method is ``method_a``) is the caller's: it is passed in, never imported.
"""
