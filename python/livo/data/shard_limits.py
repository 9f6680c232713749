"""Bounds of the shard writer's settings, in a module of their own so that the command line checks its
flags against them without importing the writer."""

# Bucket numbers are three digits in shard names ({split}-{bucket:03}-{sequence:05}.parquet).
MAX_BUCKETS = 1000
# Far beyond any useful shard; a larger number only overflowed in the engine.
MAX_TARGET_SHARD_BYTES = 64 << 30
# A row group is buffered in memory for every open shard until it is full.
MAX_ROW_GROUP_BYTES = 4 << 30
# zstd's levels.
MAX_ZSTD_LEVEL = 22
