"""Loading a config file the way every tool of the plugin does."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def load_config(path: str, cfg_options: Optional[dict], tool: str) -> Config:
    """``path`` read by mmengine with ``--cfg-options`` merged in; a missing file
    stops the tool with its name (``'<tool>: config file X does not exist'``)."""
    if not osp.isfile(path):
        raise SystemExit(f'{tool}: config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
