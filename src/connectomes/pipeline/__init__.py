"""Layer 8, the study's stages: the whole config, the run, evolve (outer loop), develop (inner loop),
sweep units, the plan and the study that runs them in order. Never imports the analysis layer."""
