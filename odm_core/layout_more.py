"""ProjectTree's paths of odmflow's bookkeeping and of split-merge (ODM's `submodels/`), kept apart for
length: odm_core.layout.ProjectTree is the class that names every path."""

from __future__ import annotations

from pathlib import Path


class MorePaths:
    """Paths of odmflow's checkpoints, and of a split survey: the submodels' folders, the partition, and
    a submodel's seed."""

    root: Path

    # --- odmflow's own bookkeeping ----------------------------------------------------------
    @property
    def state(self) -> Path:
        """odmflow's checkpoint folder: stage manifests, digest cache, Prefect results."""
        return self.root / ".odmflow"

    def plan(self, stage: str) -> Path:
        """A stage's plan, handed to its nested flow of units by path."""
        return self.state / "plans" / f"{stage}.pkl"

    def manifest(self, stage: str) -> Path:
        return self.state / "manifests" / f"{stage}.json"

    @property
    def results(self) -> Path:
        return self.state / "results"

    @property
    def digest_cache(self) -> Path:
        return self.state / "digests.json"

    # --- split, merge -----------------------------------------------------------------------
    @property
    def image_groups_txt(self) -> Path:
        """ODM's image_groups.txt (photo name, group name per line): one submodel per group."""
        return self.root / "image_groups.txt"

    @property
    def submodels(self) -> Path:
        return self.root / "submodels"

    def submodel(self, name: str) -> Path:
        """A submodel's project folder (ODM's submodels/submodel_0000)."""
        return self.submodels / name

    @property
    def split_json(self) -> Path:
        """The split stage's record: each submodel's name, photos and core photos' positions (absent when
        the survey was not split), which the merge stage reads."""
        return self.submodels / "split.json"

    @property
    def clusters_geojson(self) -> Path:
        """The submodels' extents with their overlap (ODM's clusters_with_neighbors.geojson)."""
        return self.submodels / "opensfm" / "clusters_with_neighbors.geojson"

    @property
    def split_seed(self) -> Path:
        """In a submodel: the parent's model of the submodel's photos (COLMAP binary files), which its
        opensfm stage takes instead of running SfM again."""
        return self.root / "split_seed"

    @property
    def submodel_options_json(self) -> Path:
        """In a submodel: the pipeline options it runs with, as the split stage wrote them."""
        return self.root / "submodel_options.json"

    @property
    def node_task_json(self) -> Path:
        """In a submodel run on a node (--sm-cluster): what was sent (its seed's digest) and the task that
        made the products now here."""
        return self.state / "node_task.json"
