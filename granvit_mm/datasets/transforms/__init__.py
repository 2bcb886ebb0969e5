"""Gran pipeline transforms (registered in ``granvit_mm.registry.TRANSFORMS``, scope ``granvit``)."""
from .formatting import PackGranInputs
from .geometry import GranRandomFlip, GranSquareResize
from .loading import LoadGranImage
from .tasks import SampleRegionTasks

__all__ = ['LoadGranImage', 'GranRandomFlip', 'GranSquareResize', 'SampleRegionTasks', 'PackGranInputs']
