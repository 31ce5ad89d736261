"""The outputs a user looks for first: the run summary's links."""

from __future__ import annotations

from pathlib import Path

from odm_core.layout import ProjectTree


def key_outputs(tree: ProjectTree) -> dict[str, Path]:
    """The outputs a user looks for first, by name, where they exist."""
    named = {
        "point cloud (LAZ)": tree.georeferenced_model_laz,
        "textured model (OBJ)": tree.textured_model("3d"),
        "textured model (GLB)": tree.textured_model("3d", ".glb"),
        "2.5D textured model (OBJ)": tree.textured_model("25d"),
        "orthophoto": tree.orthophoto_tif,
        "DSM": tree.dsm_tif,
        "DTM": tree.dtm_tif,
        "orthophoto PNG": tree.orthophoto_png,
        "orthophoto KMZ": tree.orthophoto_kmz,
        "orthophoto tiles (XYZ)": tree.orthophoto_tiles,
        "DSM tiles (XYZ)": tree.dsm_tiles,
        "DTM tiles (XYZ)": tree.dtm_tiles,
        "cutline": tree.orthophoto_cutline,
        "crop bounds": tree.georeferenced_model_bounds_gpkg,
        "shots.geojson": tree.shots_geojson,
        "stats.json": tree.report_stats,
        "reconstruction.json": tree.reconstruction_json,
        "cameras.json": tree.cameras_json,
        "sparse cloud (LAZ)": tree.sparse_laz,
        "images.json": tree.images_json,
    }
    return {name: path for name, path in named.items() if path.exists()}
