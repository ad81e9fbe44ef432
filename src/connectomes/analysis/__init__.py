"""Layer 9, what a run's files say: results and staleness, statistics, sweep maths, tables, figures
and the report. Reads run folders; trains nothing."""
