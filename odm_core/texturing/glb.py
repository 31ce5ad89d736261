"""The textured model as binary glTF (`--gltf`), in ODM's layout (opendm/gltf.py `obj2glb`) with pygltflib.

As ODM: one mesh, one primitive per material, float32 positions as in the OBJ (model frame, Z up, not
rotated), V flipped back to glTF's top-left origin, textures re-encoded as JPEG (quality 90), unlit
materials (`KHR_materials_unlit`, required), linear samplers, and `CESIUM_RTC` with center [E0, N0, 0]
(the coords.txt offset; not ECEF). Unlike ODM: indexed primitives (each (vertex, vt) pair once, uint32
indices; about half the size) and no normals (an unlit material does not use them, and degenerate faces'
zero normals fail the validator).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pygltflib

from odm_core.artifacts import atomic_path
from odm_core.photos.decode import read_image
from odm_core.texturing.objfile import ObjModel

JPEG_QUALITY = 90
UNLIT = "KHR_materials_unlit"


def _pad4(blob: bytes) -> bytes:
    return blob + b"\x00" * (-len(blob) % 4)


def _jpeg(path: Path) -> bytes:
    image = read_image(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot decode texture {path}")
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"cannot encode {path} as JPEG")
    return data.tobytes()


class _Builder:
    """Accumulates the binary chunk, buffer views and accessors."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[pygltflib.BufferView] = []
        self.accessors: list[pygltflib.Accessor] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        self.views.append(
            pygltflib.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target)
        )
        self.blob += _pad4(data)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int, target: int, bounds: bool) -> int:
        view = self.view(array.tobytes(), target)
        extra = {"max": array.max(axis=0).tolist(), "min": array.min(axis=0).tolist()} if bounds else {}
        if kind == pygltflib.SCALAR:
            extra = {k: [int(v)] for k, v in (("max", array.max()), ("min", array.min()))} if bounds else {}
        self.accessors.append(
            pygltflib.Accessor(bufferView=view, componentType=component, count=len(array), type=kind, **extra)
        )
        return len(self.accessors) - 1


def _primitive(
    b: _Builder, vertices: np.ndarray, vt: np.ndarray, corners: np.ndarray, material: int
) -> pygltflib.Primitive:
    """One material's faces (K, 3, 2) [vertex, vt] as an indexed primitive."""
    pairs, index = np.unique(corners.reshape(-1, 2), axis=0, return_inverse=True)
    positions = vertices[pairs[:, 0]].astype(np.float32)
    uv = vt[pairs[:, 1]].astype(np.float32)
    uv[:, 1] = 1.0 - uv[:, 1]  # OBJ's V points up the image, glTF's down
    pos = b.accessor(positions, pygltflib.VEC3, pygltflib.FLOAT, pygltflib.ARRAY_BUFFER, True)
    tex = b.accessor(uv, pygltflib.VEC2, pygltflib.FLOAT, pygltflib.ARRAY_BUFFER, True)
    idx = b.accessor(
        index.astype(np.uint32).ravel(),
        pygltflib.SCALAR,
        pygltflib.UNSIGNED_INT,
        pygltflib.ELEMENT_ARRAY_BUFFER,
        True,
    )
    return pygltflib.Primitive(
        attributes=pygltflib.Attributes(POSITION=pos, TEXCOORD_0=tex), indices=idx, material=material
    )


def write_glb(obj: ObjModel, glb_path: Path, rtc_offset: tuple[float, float] | None) -> Path:
    """The textured model (as its OBJ holds it: objfile.read_obj, or atlas.textured_obj_model from the
    arrays the OBJ was written from) as a GLB; rtc_offset (E0, N0) gives CESIUM_RTC."""
    b = _Builder()
    primitives: list[pygltflib.Primitive] = []
    materials: list[pygltflib.Material] = []
    textures: list[pygltflib.Texture] = []
    images: list[pygltflib.Image] = []
    for name, corners in obj.groups.items():
        primitives.append(_primitive(b, obj.vertices, obj.vt, corners, len(materials)))
        images.append(pygltflib.Image(bufferView=b.view(_jpeg(obj.textures[name])), mimeType="image/jpeg"))
        textures.append(pygltflib.Texture(source=len(images) - 1, sampler=0))
        pbr = pygltflib.PbrMetallicRoughness(
            baseColorTexture=pygltflib.TextureInfo(index=len(textures) - 1),
            metallicFactor=0,
            roughnessFactor=1,
        )
        materials.append(pygltflib.Material(name=name, pbrMetallicRoughness=pbr, extensions={UNLIT: {}}))
    gltf = pygltflib.GLTF2(
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0)],
        meshes=[pygltflib.Mesh(primitives=primitives)],
        materials=materials,
        textures=textures,
        samplers=[pygltflib.Sampler(magFilter=pygltflib.LINEAR, minFilter=pygltflib.LINEAR)],
        images=images,
        accessors=b.accessors,
        bufferViews=b.views,
        buffers=[pygltflib.Buffer(byteLength=len(b.blob))],
        extensionsUsed=[UNLIT],
        extensionsRequired=[UNLIT],
    )
    if rtc_offset is not None:
        gltf.extensionsUsed.append("CESIUM_RTC")
        gltf.extensions = {"CESIUM_RTC": {"center": [float(rtc_offset[0]), float(rtc_offset[1]), 0.0]}}
    gltf.set_binary_blob(bytes(b.blob))
    with atomic_path(glb_path) as tmp:
        gltf.save_binary(str(tmp))
    return glb_path
