"""Load a training config for inference (what it pre-processes with: :mod:`.preprocessing`)."""
import copy


def load_config(config):
    """A config file path, dict or Config -> a private Config copy."""
    from mmengine.config import Config
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, dict):
        return Config(copy.deepcopy(config))
    from granvit_mm.core.paths import check_path
    return Config.fromfile(check_path(str(config), 'The config', 'Pass a config file, e.g. '
                                      'configs/granvit_pretrain_tiny.py.'))
