from .region_ar_head import *  # noqa: F401,F403
