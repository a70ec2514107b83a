"""Every shipped experiment and profile composes, as `make grid DRY=1` would validate it, so a
missing profile or key fails here, not on the cluster."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate
from conftest import REPO

from actlab import families
from actlab.launch.grid import build_grid
from actlab.launch.submit import prepare

CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(CONFIGS.glob("*/experiment/*.yaml"))


def test_the_tree_shows_every_family_and_its_config_root():
    names = families.names()
    assert {"continual", "pretrain"} <= set(names)
    for name in names:
        family = families.get(name)
        assert (CONFIGS / family.config_dir / f"{family.config_name}.yaml").exists(), name
        assert (REPO / "src" / "actlab" / "families" / name / "__init__.py").exists()
        assert callable(family.job_function())


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_composes_for_every_grid_point_and_unit(path, egotoy_splits, pretrained, monkeypatch):
    monkeypatch.setenv("ACTLAB_ROOT", str(egotoy_splits.parent))
    family = families.for_experiment(path.stem, CONFIGS)
    assert path.parent.parent == CONFIGS / family.config_dir
    grid = build_grid(CONFIGS / family.config_dir, path.stem, family, REPO,
                      {"paths.splits": str(egotoy_splits), "paths.pretrained": str(pretrained)})
    assert grid.points and grid.cfg.experiment == path.stem
    if family.unit:
        assert all(p.unit is not None for p in grid.points)
    if grid.reference_group:   # the reference group is one of the points
        assert any(p.identity(path.stem, "x", "c", family.name).group == grid.reference_group for p in grid.points)
    if family.name == "continual":
        # Every point's method builds: a value set at the experiment's top level (not in the grid)
        # would also reach the frozen reference, whose constructor refuses e.g. `lr`.
        for cfg in grid.configs:
            instantiate(cfg.method)


@pytest.mark.parametrize("cluster", sorted(p.stem for p in (CONFIGS / "cluster").glob("*.yaml")))
def test_every_cluster_profile_prepares_a_sweep(cluster, egotoy_root, egotoy_splits, pretrained, monkeypatch,
                                                tmp_path):
    """Each cluster profile with its paths profile, for the main experiment (nothing submitted)."""
    import yaml

    monkeypatch.setenv("ACTLAB_ROOT", str(tmp_path))
    for var in ("ACTLAB_EGO4D", "ACTLAB_EGO4D_CHECKPOINT", "ACTLAB_SCRATCH"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    profile = yaml.safe_load((CONFIGS / "cluster" / f"{cluster}.yaml").read_text())
    # the inputs must exist (`make grid` checks them before anything is written)
    sweep, manifest = prepare("egotoy_main", profile, {"cpus": 1}, dry=True,
                              task_overrides=[f"paths.data={egotoy_root}", f"paths.splits={egotoy_splits}",
                                              f"paths.pretrained={pretrained}"])
    assert manifest.family == "continual" and len(manifest.rows) == 4 * 3
    if profile.get("paths"):
        assert manifest.task_overrides["paths"] == profile["paths"]


def test_an_unset_cluster_path_stops_naming_the_variable(egotoy_splits, monkeypatch, tmp_path):
    monkeypatch.setenv("ACTLAB_SCRATCH", str(tmp_path))
    monkeypatch.delenv("ACTLAB_EGO4D", raising=False)
    with pytest.raises(ValueError, match="ACTLAB_EGO4D"):
        prepare("egotoy_main", {"executor": "slurm", "paths": "bluecrystal"}, {"cpus": 1}, dry=True,
                task_overrides=[f"paths.splits={egotoy_splits}"])
