"""Layer 3, text -> tokens -> shards -> batches: tokenizers, the shard format, sources, prepare, the batch stream
and the ``data`` config section."""
