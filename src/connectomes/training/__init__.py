"""Layer 5, one training loop for every stage: the ``train`` config section, the optimizers, the loop,
checkpoints, validation loss and metric sinks."""
