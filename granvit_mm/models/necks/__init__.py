from .projector import *  # noqa: F401,F403
from .simple_fpn import LayerNorm2d, SimpleFPN  # noqa: F401
