"""connectomes: generational connectome studies of language models (Kotar & Tuckute 2025).

The package is layered like the pipeline it runs, imports pointing one way (down): core, model, data,
connectome, training, io, evals, pipeline, analysis, then the package's faces: ``connectomes.api`` (a
study run and reported) and the command line. ``results(RUN)`` is the public results API: one tidy table
of a run folder's numbers (connectomes.analysis.results).
"""

from .core.provenance import VERSION as __version__

__all__ = ["__version__", "results"]


def results(run_dir):
    """One tidy pandas table of a run folder's results (connectomes.analysis.results.results_table)."""
    from .analysis.results import results_table

    return results_table(run_dir)
