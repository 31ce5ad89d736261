"""Structure from motion helpers: matching pairs and the OpenSfM/COLMAP exports."""
