from .region_distill_loss import *  # noqa: F401,F403
