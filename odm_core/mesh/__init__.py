"""Triangle meshes: screened Poisson with trimming, the 2.5D height-field mesh, decimation, PLY files."""
