"""Texturing a mesh from the photos (ODM's mvs_texturing; mvs-texturing's method): per-face view
selection (selection.py and its per-view units), then charts, an atlas, seam levelling and baking."""
