"""connectomes: generational connectome studies of language models (Kotar & Tuckute 2025).

The package is layered like the pipeline it runs, imports pointing one way (down): core, model, data,
connectome, training, io, evals, pipeline, analysis, then the package's faces: ``connectomes.api`` (a
study run and reported) and the command line. ``results(RUN)`` is the public results API: one tidy table
of a run folder's numbers (connectomes.analysis.results).
"""

import os

# MKL's strict conditional numerical reproducibility: its matrix products give the same bits whatever the number of
# threads, which is what lets the thread policy (core.runtime) and study workers choose threads without changing a
# number. Without it, replicate-cpu's gradients differ between 1 and 2 threads in every matrix after one step (the
# default kernels split a product's reductions by thread). Read by MKL at its first call, so set at import, before
# anything of this package runs torch; a value the user set wins. Costs nothing measurable (BENCHMARKS.md "Threads").
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .core.provenance import VERSION as __version__  # noqa: E402

__all__ = ["__version__", "results"]


def results(run_dir):
    """One tidy pandas table of a run folder's results (connectomes.analysis.results.results_table)."""
    from .analysis.results import results_table

    return results_table(run_dir)
