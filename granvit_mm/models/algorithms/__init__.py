from .granvit_pretrainer import *  # noqa: F401,F403
