from .backbone_layer_decay import BackboneLayerDecayOptimWrapperConstructor  # noqa: F401
from .deepspeed_teacher import DeepSpeedTeacherOptimWrapper  # noqa: F401
