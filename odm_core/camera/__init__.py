"""Cameras as the dense and orthophoto stages see them: projection, photo decoding."""
