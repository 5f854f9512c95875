"""tlrun's Hydra sweeper plugin: ``hydra/sweeper=optuna`` (see :mod:`tlrun.tracking.search`)."""
