"""generate_synthetic: photos with EXIF in OUT/images, the exact truth in OUT/truth."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from odm_core.artifacts import atomic_path
from odm_core.synthetic.exif import GpsFix, photo_exif
from odm_core.synthetic.gcp_file import write_gcp_files
from odm_core.synthetic.options import SyntheticOptions, SyntheticTruth
from odm_core.synthetic.records import write_cameras_json, write_truth_json
from odm_core.synthetic.render import render_photo
from odm_core.synthetic.truth import write_truth_rasters
from odm_core.synthetic.world import SyntheticWorld, make_world


def gps_readings(world: SyntheticWorld) -> np.ndarray:
    """Noisy GPS positions (local frame, N x 3): sigma_h per horizontal axis, sigma_v vertically, and a
    consumer receiver's errors in capture order: a horizontal random walk (gps_drift_m end to end, about),
    an altitude error rising linearly to gps_altitude_ramp x the flying height, one jump (gps_jump_m), and
    a constant bias (gps_bias_m, its direction seeded)."""
    opts = world.opts
    rng = np.random.default_rng([opts.seed, 3])
    sigma = np.array([opts.gps_sigma_h_m, opts.gps_sigma_h_m, opts.gps_sigma_v_m])
    centres = np.array([p.centre for p in world.poses])
    readings = centres + sigma * rng.standard_normal(centres.shape)
    n = len(centres)
    if opts.gps_drift_m > 0:
        steps = rng.standard_normal((n, 2)) * opts.gps_drift_m / np.sqrt(n)
        readings[:, :2] += np.cumsum(steps, axis=0)
    readings[:, 2] += np.linspace(0.0, opts.gps_altitude_ramp * opts.flying_height_m, n)
    if opts.gps_jump_m > 0:
        readings[n // 2, 0] += opts.gps_jump_m
    if opts.gps_bias_m > 0:
        direction = np.random.default_rng([opts.seed, 8]).standard_normal(3)
        readings += opts.gps_bias_m * direction / np.linalg.norm(direction)
    return readings


def write_photo(world: SyntheticWorld, index: int, gps_local: np.ndarray, images_dir: Path) -> GpsFix:
    """Render photo `index`, save it as JPEG with its EXIF; return the GPS fix written."""
    opts = world.opts
    rng = np.random.default_rng([opts.seed, 4, index])
    pixels = render_photo(
        world.scene, world.poses[index], world.intrinsics, rng, opts.exposure_sigma, opts.sensor_noise_dn
    )
    lat, lon, alt = world.lla_from_local(gps_local)[0]
    exif, fix = photo_exif(opts, index, float(lat), float(lon), float(alt))
    with atomic_path(images_dir / world.poses[index].name) as tmp:
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=opts.jpeg_quality, exif=exif.tobytes())
    return fix


def generate_synthetic(out_dir: Path, opts: SyntheticOptions = SyntheticOptions()) -> SyntheticTruth:  # noqa: B008
    """Render the flight's photos into `out_dir`/images and its exact truth into `out_dir`/truth."""
    out_dir = Path(out_dir)
    world = make_world(opts)
    images, truth = out_dir / "images", out_dir / "truth"
    images.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in world.poses}
    for stale in images.glob("IMG_*.JPG"):
        if stale.name not in names:
            stale.unlink()
    gps = gps_readings(world)
    with ThreadPoolExecutor(max_workers=opts.workers) as pool:
        fixes = list(pool.map(lambda i: write_photo(world, i, gps[i], images), range(len(world.poses))))
    paths = {
        "cameras_json": truth / "cameras.json",
        "dsm_tif": truth / "dsm.tif",
        "orthophoto_tif": truth / "orthophoto.tif",
        "truth_json": truth / "truth.json",
    }
    grid = write_truth_rasters(world, paths["dsm_tif"], paths["orthophoto_tif"], opts.workers)
    write_cameras_json(paths["cameras_json"], world, fixes)
    files = {k: v.relative_to(out_dir).as_posix() for k, v in paths.items()} | {"images": "images"}
    write_truth_json(paths["truth_json"], world, grid, files)
    gcp_list = out_dir / "gcp_list.txt"
    if world.scene.targets:
        write_gcp_files(world, gcp_list, truth / "gcps.json")
    return SyntheticTruth(
        project_dir=out_dir,
        images_dir=images,
        epsg=world.epsg,
        gsd_m=opts.gsd_m,
        resolution_m=grid.res_m,
        flying_height_m=opts.flying_height_m,
        n_photos=len(world.poses),
        gcp_list=gcp_list if world.scene.targets else None,
        **paths,
    )
