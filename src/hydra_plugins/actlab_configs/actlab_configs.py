"""Hydra finds the shared config groups (cluster/, resources/, paths/, hydra/, base.yaml) of
`configs/` from every family's config root (`configs/<family>/`), for `@hydra.main` entry points
and the launcher's `compose` alike. The folder is found next to the code, so a sweep's code
snapshot (code/src beside code/configs) uses its own copy. See docs/families.md.
"""
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SHARED_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


class ActlabSharedConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if SHARED_CONFIGS.is_dir():
            search_path.append(provider="actlab", path=f"file://{SHARED_CONFIGS}")
