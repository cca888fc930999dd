"""The field's hyper-parameter search (``hparams_search=wsol|wsol_tpe``) around one training job.

``conf/hparams_search/`` runs Hydra's Optuna sweeper over the ranges of docs/search.md (see
``docs/search.md``). This module is what the jobs and the sweep need beyond the sweeper:

- :func:`run_trial`: a job with ``optimized_metric`` set returns that val metric to the
  sweeper, and writes ``trial.json`` (value, status, overrides) in its folder. A diverged job
  (non-finite loss, weights or outputs: :class:`TrainingDiverged`) or a crashed one is recorded
  (``status``, ``error``) and raised to the sweeper, which records a failed trial and goes on
  (``max_failure_rate: 1.0``); a config mistake (any other ``UserError``) stops the search;
- :class:`~camexp.callbacks.divergence.DivergenceGuard`: the callback that stops a run whose loss is NaN or infinite, on
  every DDP process at the same step;
- :func:`has_patch_side`: HaS's patch side over the divisors of the crop size up to half of it;
- :class:`BestTrialPreset`: at the end of the sweep, writes the best trial's config as a ready
  experiment preset beside the sweep, ``trials.csv``, and the command that trains and tests it.
"""
