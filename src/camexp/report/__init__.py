"""``python -m camexp.report <folder>``: our numbers next to the paper's, per paper table.

Collects the runs under ``<folder>`` (any folder holding ``.hydra/config.yaml``: a sweep, a
runs folder, one run), reads each run's ``metrics.json`` and the paper numbers its experiment
preset carries (``paper.rows`` of the composed config, see ``conf/experiment/``), and writes
into ``<folder>/report/`` (or ``--out``):

- ``report.md``: the runs table of every run, preset or not (:mod:`camexp.report.runs_table`: one
  row per run, also ``runs.csv`` and ``runs.png``), then one Markdown table per paper table:
  row, metric, paper, ours, ours - paper, run id (the run folder relative to ``<folder>``), status; a test number whose config had its
  test split evaluated more than once (``test_record.json``, :mod:`camexp.runs.ledger`) is marked
  ``(test evaluated Nx)``;
- ``report.csv``: the same lines with a ``table`` column;
- ``<table>.png``: a bar plot of ours versus the paper's per table.

Rows of presets without a run are listed as ``missing``; runs without ``metrics.json`` as
``unfinished``. An eval run (``python -m camexp.eval``) takes the paper rows of the training
run its ``ckpt_path`` comes from (same localization method only), or those of the preset named
by ``+paper_preset=<preset>`` (e.g. a GAP checkpoint scored with ``localization.method=backprop``).

**Units.** The paper reports percentages. camexp logs ``acc_top1``/``acc_top5`` as fractions
and localization metrics in %. The report derives, in %:
``cls_top1_err = 100 * (1 - acc_top1)``, ``cls_top5_err = 100 * (1 - acc_top5)`` (Table 1),
``acc_top1_pct = 100 * acc_top1`` (Table 4); every other metric is compared as logged.
"""
