from .grounding_metric import GroundingMetric  # noqa: F401
from .region_caption_metric import RegionCaptionMetric  # noqa: F401
from .rouge import lcs_length, rouge_l  # noqa: F401
