"""Read fields of a predicted sample whether it is a GranDataSample or the dict MMEngine's Evaluator makes."""
from typing import Any


def sample_field(sample: Any, name: str, default=None):
    """``GranDataSample.to_dict()`` stores ``tasks``/``pred_texts`` under ``_tasks``/``_pred_texts``."""
    if isinstance(sample, dict):
        for key in (name, '_' + name):
            if key in sample:
                return sample[key]
        return default
    return getattr(sample, name, default)
