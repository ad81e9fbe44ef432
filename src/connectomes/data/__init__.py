"""Text -> tokens -> shards -> batches: tokenizers, shard format, sources, prepare, the batch stream."""
