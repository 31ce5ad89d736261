"""ProjectTree: the one place that names every artifact path of a project (ODM's ODM_Tree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from odm_core.layout_more import MorePaths


@dataclass(frozen=True)
class ProjectTree(MorePaths):
    """Paths of an ODM-style project folder; computes paths only, touches nothing."""

    root: Path

    # --- inputs -----------------------------------------------------------------------------
    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def gcp_list(self) -> Path:
        return self.root / "gcp_list.txt"

    @property
    def geo_txt(self) -> Path:
        """ODM's geo.txt in the project folder: photo positions used instead of EXIF GPS."""
        return self.root / "geo.txt"

    # --- dataset ----------------------------------------------------------------------------
    @property
    def images_json(self) -> Path:
        return self.root / "images.json"

    @property
    def img_list(self) -> Path:
        return self.root / "img_list.txt"

    @property
    def georeferencing(self) -> Path:
        return self.root / "odm_georeferencing"

    @property
    def coords_txt(self) -> Path:
        return self.georeferencing / "coords.txt"

    @property
    def proj_txt(self) -> Path:
        return self.georeferencing / "proj.txt"

    @property
    def gcp_list_utm(self) -> Path:
        """ODM's copy of the GCPs in the project's UTM zone (written by dataset when GCPs are used)."""
        return self.georeferencing / "gcp_list_utm.txt"

    # --- opensfm (features/<photo>.features.npz, matches/pairs-<k>.matches.npz: kept across runs) ---
    @property
    def opensfm(self) -> Path:
        return self.root / "opensfm"

    @property
    def colmap_database(self) -> Path:
        return self.opensfm / "colmap" / "database.db"

    @property
    def sfm_features(self) -> Path:
        return self.opensfm / "features"

    @property
    def sfm_matches(self) -> Path:
        return self.opensfm / "matches"

    @property
    def colmap_model(self) -> Path:
        """COLMAP's binary model of the largest reconstruction, in UTM-offset coordinates."""
        return self.opensfm / "colmap" / "sparse"

    @property
    def reconstruction_json(self) -> Path:
        return self.opensfm / "reconstruction.json"

    @property
    def reference_lla_json(self) -> Path:
        """OpenSfM's reference_lla.json: written only when the model is georeferenced."""
        return self.opensfm / "reference_lla.json"

    @property
    def opensfm_stats(self) -> Path:
        return self.opensfm / "stats" / "stats.json"

    @property
    def gcp_stats(self) -> Path:
        """OpenSfM's stats/ground_control_points.json: each GCP's observations and error (model frame)."""
        return self.opensfm / "stats" / "ground_control_points.json"

    @property
    def sparse_ply(self) -> Path:
        return self.opensfm / "reconstruction.ply"

    @property
    def sparse_laz(self) -> Path:
        return self.opensfm / "reconstruction.laz"

    @property
    def cameras_json(self) -> Path:
        return self.root / "cameras.json"

    # --- openmvs ----------------------------------------------------------------------------
    @property
    def openmvs(self) -> Path:
        return self.opensfm / "undistorted" / "openmvs"

    @property
    def openmvs_views(self) -> Path:
        """The dense plan: each view's camera at depth-map size, depth range and neighbours."""
        return self.openmvs / "views.json"

    @property
    def depthmaps(self) -> Path:
        return self.openmvs / "depthmaps"

    def depthmap(self, view: str, kind: str = "depth") -> Path:
        """A view's depth map: kind 'depth' (photometric), 'geometric' (refined) or 'fused' (its points)."""
        return self.depthmaps / f"{view}.{kind}.npz"

    @property
    def openmvs_model(self) -> Path:
        """The fused dense cloud (ODM's name for the openmvs stage's checkpoint)."""
        return self.openmvs / "scene_dense_dense_filtered.ply"

    # --- odm_filterpoints -------------------------------------------------------------------
    @property
    def filterpoints(self) -> Path:
        return self.root / "odm_filterpoints"

    @property
    def filtered_point_cloud(self) -> Path:
        return self.filterpoints / "point_cloud.ply"

    @property
    def filtered_point_cloud_stats(self) -> Path:
        return self.filterpoints / "point_cloud_stats.json"

    # --- odm_meshing, mvs_texturing --------------------------------------------------------
    @property
    def odm_meshing(self) -> Path:
        return self.root / "odm_meshing"

    @property
    def odm_mesh(self) -> Path:
        """The 3D mesh (model frame), unless --skip-3dmodel."""
        return self.odm_meshing / "odm_mesh.ply"

    @property
    def odm_25dmesh(self) -> Path:
        """The 2.5D mesh (model frame), unless --use-3dmesh."""
        return self.odm_meshing / "odm_25dmesh.ply"

    def texturing(self, model: str) -> Path:
        """odm_texturing/ for the 3D model ("3d"), odm_texturing_25d/ for the 2.5D one ("25d")."""
        return self.root / ("odm_texturing" if model == "3d" else "odm_texturing_25d")

    def textured_model(self, model: str, suffix: str = ".obj") -> Path:
        """odm_textured_model_geo.obj, .mtl or .glb (suffix) of texturing(model)."""
        return self.texturing(model) / f"odm_textured_model_geo{suffix}"

    # --- odm_georeferencing -----------------------------------------------------------------
    @property
    def georeferenced_model_laz(self) -> Path:
        return self.georeferencing / "odm_georeferenced_model.laz"

    @property
    def georeferenced_model_las(self) -> Path:
        return self.georeferencing / "odm_georeferenced_model.las"

    @property
    def georeferenced_model_csv(self) -> Path:
        return self.georeferencing / "odm_georeferenced_model.csv"

    @property
    def ground_control_points_gpkg(self) -> Path:
        return self.georeferencing / "ground_control_points.gpkg"

    @property
    def ground_control_points_geojson(self) -> Path:
        return self.georeferencing / "ground_control_points.geojson"

    @property
    def georeferenced_model_bounds_gpkg(self) -> Path:
        """The crop polygon (--crop, or --boundary with --crop 0) that odm_dem and odm_orthophoto apply."""
        return self.georeferencing / "odm_georeferenced_model.bounds.gpkg"

    @property
    def georeferenced_model_bounds_geojson(self) -> Path:
        return self.georeferencing / "odm_georeferenced_model.bounds.geojson"

    # --- odm_dem ----------------------------------------------------------------------------
    @property
    def dem(self) -> Path:
        return self.root / "odm_dem"

    @property
    def dsm_tif(self) -> Path:
        return self.dem / "dsm.tif"

    @property
    def dtm_tif(self) -> Path:
        return self.dem / "dtm.tif"

    def dem_tif(self, kind: str) -> Path:
        """odm_dem/dsm.tif or dtm.tif."""
        return self.dem / f"{kind}.tif"

    def dem_euclidean(self, kind: str) -> Path:
        """odm_dem/dsm.euclideand.tif or dtm.euclideand.tif (--dem-euclidean-map)."""
        return self.dem / f"{kind}.euclideand.tif"

    @property
    def dem_tiles(self) -> Path:
        """Per-tile checkpoints while the stage runs (removed when it finishes)."""
        return self.dem / "tiles"

    @property
    def dsm_tiles(self) -> Path:
        """XYZ PNG tiles of the DSM's colour-relief hillshade (--tiles): {z}/{x}/{y}.png, EPSG:3857."""
        return self.root / "dsm_tiles"

    @property
    def dtm_tiles(self) -> Path:
        """XYZ PNG tiles of the DTM's colour-relief hillshade (--tiles)."""
        return self.root / "dtm_tiles"

    # --- odm_orthophoto ---------------------------------------------------------------------
    @property
    def orthophoto(self) -> Path:
        return self.root / "odm_orthophoto"

    @property
    def orthophoto_tif(self) -> Path:
        return self.orthophoto / "odm_orthophoto.tif"

    @property
    def orthophoto_png(self) -> Path:
        return self.orthophoto / "odm_orthophoto.png"

    @property
    def orthophoto_kmz(self) -> Path:
        return self.orthophoto / "odm_orthophoto.kmz"

    @property
    def orthophoto_cutline(self) -> Path:
        """--orthophoto-cutline: the crop polygon cut along feature edges, for stitching mosaics."""
        return self.orthophoto / "cutline.gpkg"

    @property
    def orthophoto_work(self) -> Path:
        """Per-tile checkpoints while the stage runs (removed when it finishes)."""
        return self.orthophoto / "tiles"

    @property
    def orthophoto_tiles(self) -> Path:
        """XYZ PNG tiles of the orthophoto (--tiles): {z}/{x}/{y}.png, EPSG:3857."""
        return self.root / "orthophoto_tiles"

    # --- odm_report -------------------------------------------------------------------------
    @property
    def report(self) -> Path:
        return self.root / "odm_report"

    @property
    def shots_geojson(self) -> Path:
        return self.report / "shots.geojson"

    @property
    def report_pdf(self) -> Path:
        return self.report / "report.pdf"

    @property
    def report_stats(self) -> Path:
        return self.report / "stats.json"
