from . import backbones, necks  # noqa: F401
from . import algorithms, heads, losses, utils  # noqa: F401
