"""Per-pixel generator features (the paper's representation) and their on-disk fp16 cache."""

from partseg.features.cache import (FeatureCache, build_or_reuse, cache_is_current,
                                    generator_checksum, stale_reason, write_cache_from_arrays,
                                    write_feature_cache)
from partseg.features.extract import FeatureExtractor, resize_feature_map, select_layers

__all__ = ["FeatureCache", "FeatureExtractor", "build_or_reuse", "cache_is_current",
           "generator_checksum", "resize_feature_map", "select_layers",
           "stale_reason", "write_cache_from_arrays", "write_feature_cache"]
