"""Layer 7, evaluations (docs/method.md §6): the task registry (``registry``), the ``eval`` config section,
the scoring interface, the runner, and one module per task in ``tasks/``."""
