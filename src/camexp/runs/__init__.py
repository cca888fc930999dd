"""A run and its folder: the lock, the Hydra record, the settings eval reuses, checkpoints and
resume, the test ledger, the loggers, and the job that builds the trainer and finishes the run."""
