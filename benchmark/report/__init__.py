"""``python -m benchmark report``: results in, tables, figures and index pages out -- results
only, never a model (no module of this package imports torch).

Layers, bottom to top (each module imports only those below it):

* :mod:`~benchmark.report.order` -- display order of methods, protocols (from the registered
  protocols), modes and datasets; column labels;
* :mod:`~benchmark.report.table` -- the table model, its one grid walk and the Markdown, LaTeX
  and CSV renderers;
* :mod:`~benchmark.report.tables` -- the seed summary and the table builders;
* :mod:`~benchmark.report.claims` -- MIT-BIH AAMI, paired differences, the paper's claims;
* :mod:`~benchmark.report.index` -- sections, caveats and ``index.md``;
  :mod:`~benchmark.report.html` -- the same as one self-contained ``index.html``;
* :mod:`~benchmark.report.figures` -- the figures (matplotlib);
* :mod:`~benchmark.report.build` -- :func:`~benchmark.report.build.make_report`, which runs them.

The command line is :mod:`benchmark.cli.report`.
"""
