"""Layer 4, the connectome itself: masks and magnitude pruning (``masks``), the ternary connectome and its
controls (``ternary``), its files (``codec``) and the inner loop's arms (``arms``)."""
