"""Load a training config for inference and read the pre-processing settings inference must repeat."""
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


def config_setting(cfg, transform_type: str, key: str, default=None):
    """A transform argument from the test (else val, else train) pipeline, e.g. GranSquareResize's size."""
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        for step in dataset.get('pipeline') or []:
            if str(step.get('type', '')).split('.')[-1] == transform_type and key in step:
                return step[key]
    return default
