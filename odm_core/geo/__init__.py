"""Georeferencing: UTM frames, boundaries and the crop polygon."""
