"""The connectome's anatomy against its nulls (docs/method.md §8): which wiring survives, per tensor, head and
token, across generations and across lineages.

``stats`` the null's exact counts and dispersion; ``placement`` one connectome's degrees and signs;
``compare`` generations, generation 0's magnitudes, tokens and the codec; ``lineages`` two lineages against
the uniform and the symmetry null; ``target`` what is analysed (``AnatomyTarget``) and ``anatomy.json``;
``figures`` its figures; ``report`` the report's section and the verb's summary.
"""

from .report import report_section, summary_lines
from .target import AnatomyTarget, current_anatomy, write_anatomy

__all__ = ["AnatomyTarget", "current_anatomy", "report_section", "summary_lines", "write_anatomy"]
