"""odmflow's algorithms: plain functions from paths and options to paths and results (no Prefect here)."""

# numpy before pycolmap: a process whose first import is pycolmap 4.2.1 corrupts its heap ("free(): invalid
# pointer" at a later free, reproduced with `import pycolmap` then numpy allocations and cv2.imencode);
# numpy first, it does not. odm_core's modules load numpy before they reach pycolmap this way.
import numpy  # noqa: F401  (imported for its side effect: loaded before pycolmap)

__version__ = "0.1.0"
