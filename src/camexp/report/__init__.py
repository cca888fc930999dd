"""``python -m camexp.report <folder>``: our numbers next to the paper's, per paper table.

Collects the runs under ``<folder>`` (any folder holding ``.hydra/config.yaml``: a sweep, a
runs folder, one run), reads each run's ``metrics.json``, finds the published rows that describe
what the run's config says it ran (``conf/published.yaml``, :mod:`camexp.report.published`:
dataset, backbone, training method, pooling, scored map and the row's deciding settings), and
writes into ``<folder>/report/`` (or ``--out``):

- ``report.md``: the runs table of every run, preset or not (:mod:`camexp.report.runs_table`: one
  row per run, also ``runs.csv`` and ``runs.png``), then one Markdown table per paper table:
  row, metric, paper, ours, ours - paper, tests (the distinct test evaluations, checkpoint and
  settings, of the run's experiment in the test ledger: :mod:`camexp.runs.ledger`), run id (the
  run folder relative to ``<folder>``), status;
- ``report.csv``: the same lines with a ``table`` column;
- ``<table>.png``: a bar plot of ours versus the paper's per table.

Rows with a recipe and no run are listed as ``missing``; runs without ``metrics.json`` as
``unfinished``, or ``failed to start`` when they stopped before training or testing
(``start_failed.txt``). The field's table (:mod:`camexp.report.field_table`) takes only
training runs under the field's protocol. An eval run (``python -m camexp.eval``) is described by the training run its
``ckpt_path`` comes from and its own data and ``localization.method`` (a GAP checkpoint scored
with ``localization.method=backprop`` gets the Backprop rows), or takes the rows of the recipe
named by ``+paper_preset=<recipe>``.

**Units.** The paper reports percentages. camexp logs ``acc_top1``/``acc_top5`` as fractions
and localization metrics in %. The report derives, in %:
``cls_top1_err = 100 * (1 - acc_top1)``, ``cls_top5_err = 100 * (1 - acc_top5)`` (Table 1),
``acc_top1_pct = 100 * acc_top1`` (Table 4); every other metric is compared as logged.
"""
