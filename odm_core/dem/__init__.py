"""Elevation models: gridding, per-tile units, euclidean maps."""
