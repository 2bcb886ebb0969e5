from .fsdp import GranViTFSDPStrategy, wrap_module_classes  # noqa: F401
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
