"""Layer 1, the foundation every other layer stands on: the config machinery, the run-folder layout,
sweep axes, errors, atomic writes, integrity manifests, locks, input parsing, progress bars, the
process group and provenance. Imports nothing else of the package."""
