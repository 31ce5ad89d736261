"""Feature extraction sizes as ODM computes them (opendm/config.py, --feature-quality)."""

# ODM's feature_process_size ratios (opendm/config.py, --feature-quality).
FEATURE_QUALITY_RATIO: dict[str, float] = {
    "ultra": 1.0,
    "high": 0.5,
    "medium": 0.25,
    "low": 0.125,
    "lowest": 0.0675,
}


def feature_process_size(width: int, height: int, quality: str) -> int:
    """ODM's feature extraction size (longest side, px) for a photo and --feature-quality."""
    max_dim = max(width, height)
    ratio = FEATURE_QUALITY_RATIO[quality]
    megapixels = width * height / 1e6
    if megapixels < 2:
        ratio *= 2
    elif megapixels > 42:
        ratio *= 0.5
    return int(min(max_dim, max(320, min(4480, round(max_dim * ratio)))))
