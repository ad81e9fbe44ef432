"""One module per evaluation task, each declaring ``SPEC = TaskSpec(...)`` (connectomes.evals.registry).
Adding a task is adding a module here: the registry finds it, and the config, the CLI, the study and the
report read everything about it from its spec."""
