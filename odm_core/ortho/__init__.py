"""Orthophoto rendering and cutlines."""
