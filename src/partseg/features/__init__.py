"""Per-pixel generator features (the paper's representation) and their on-disk fp16 cache."""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "FeatureCache": "cache",
    "FeatureExtractor": "extract",
    "build_or_reuse": "cache",
    "cache_is_current": "cache",
    "cache_latent_features": "latents",
    "generator_checksum": "cache",
    "resize_feature_map": "extract",
    "select_layers": "extract",
    "stale_reason": "cache",
    "write_cache_from_arrays": "cache",
    "write_feature_cache": "cache",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
