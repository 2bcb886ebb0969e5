"""The Gran pipeline as a function, for code that builds a dataset without a config (tools, the API).

Configs write the same four steps once per dataset base (``configs/_base_/datasets``); this is the
programmatic twin, so tools do not restate it.
"""
from typing import Dict, List, Sequence


def gran_pipeline(img_size: int, tasks: Dict[str, float], box_style: str = 'decimal3', seed: int = 0,
                  max_distill_regions: int = 4, pad_val: Sequence[int] = (127, 127, 127)) -> List[dict]:
    """Load -> draw ``tasks`` -> pad to a square and resize to ``img_size`` -> pack for the model."""
    return [
        dict(type='granvit.LoadGranImage'),
        dict(type='granvit.SampleRegionTasks', tasks=dict(tasks), seed=seed,
             max_distill_regions=max_distill_regions),
        dict(type='granvit.GranSquareResize', size=img_size, pad_val=tuple(pad_val)),
        dict(type='granvit.PackGranInputs', box_style=box_style),
    ]
