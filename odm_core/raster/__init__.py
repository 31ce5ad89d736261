"""Raster writers shared by the DEM and orthophoto: GeoTIFF/COG, XYZ tiles, colour relief."""
