"""Registries of the ``granvit`` scope.

Each is a child of MMEngine's root registry, so ``type='granvit.GranViT'`` resolves from any OpenMMLab config
(``default_scope`` mmpretrain, mmdet or mmseg), and plain names resolve inside ``default_scope='granvit'``.
``locations`` lets a registry import the modules that fill it the first time it is asked. The registries we
do not fill exist so that a ``default_scope='granvit'`` runner finds MMEngine's optimizers, loops and
visualizers through its own scope instead of warning and falling back.
"""
from mmengine import registry as mme
from mmengine.registry import Registry

MODELS = Registry('model', parent=mme.MODELS, scope='granvit', locations=['granvit_mm.models'])
DATASETS = Registry('dataset', parent=mme.DATASETS, scope='granvit', locations=['granvit_mm.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=mme.DATA_SAMPLERS, scope='granvit',
                         locations=['granvit_mm.datasets'])
TRANSFORMS = Registry('transform', parent=mme.TRANSFORMS, scope='granvit',
                      locations=['granvit_mm.datasets.transforms'])
HOOKS = Registry('hook', parent=mme.HOOKS, scope='granvit', locations=['granvit_mm.engine.hooks'])
METRICS = Registry('metric', parent=mme.METRICS, scope='granvit', locations=['granvit_mm.evaluation'])
EVALUATOR = Registry('evaluator', parent=mme.EVALUATOR, scope='granvit', locations=['granvit_mm.evaluation'])

# Pass-through children: MMEngine's own modules, reached from the granvit scope.
RUNNERS = Registry('runner', parent=mme.RUNNERS, scope='granvit')
RUNNER_CONSTRUCTORS = Registry('runner constructor', parent=mme.RUNNER_CONSTRUCTORS, scope='granvit')
LOOPS = Registry('loop', parent=mme.LOOPS, scope='granvit')
LOG_PROCESSORS = Registry('log_processor', parent=mme.LOG_PROCESSORS, scope='granvit')
OPTIMIZERS = Registry('optimizer', parent=mme.OPTIMIZERS, scope='granvit')
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=mme.OPTIM_WRAPPERS, scope='granvit',
                          locations=['granvit_mm.engine.optimizers'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor', parent=mme.OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='granvit', locations=['granvit_mm.engine.optimizers'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=mme.PARAM_SCHEDULERS, scope='granvit')
MODEL_WRAPPERS = Registry('model_wrapper', parent=mme.MODEL_WRAPPERS, scope='granvit')
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=mme.WEIGHT_INITIALIZERS, scope='granvit')
TASK_UTILS = Registry('task util', parent=mme.TASK_UTILS, scope='granvit')
VISUALIZERS = Registry('visualizer', parent=mme.VISUALIZERS, scope='granvit')
VISBACKENDS = Registry('vis_backend', parent=mme.VISBACKENDS, scope='granvit')
FUNCTIONS = Registry('function', parent=mme.FUNCTIONS, scope='granvit')
STRATEGIES = Registry('strategy', parent=mme.STRATEGIES, scope='granvit',
                      locations=['granvit_mm.engine.fsdp'])
# The data engine's swappable components (ingest, boxes, captioner backends, OCR, filters):
# granvit_mm/data_engine.
DATA_ENGINE_STAGES = Registry('data engine stage', scope='granvit', locations=['granvit_mm.data_engine'])

__all__ = [
    'MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'HOOKS', 'METRICS', 'EVALUATOR', 'RUNNERS',
    'RUNNER_CONSTRUCTORS', 'LOOPS', 'LOG_PROCESSORS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'TASK_UTILS',
    'VISUALIZERS', 'VISBACKENDS', 'FUNCTIONS', 'STRATEGIES', 'DATA_ENGINE_STAGES'
]
