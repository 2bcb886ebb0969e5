"""Read fields of a predicted sample whether it is a GranDataSample or the dict MMEngine's Evaluator makes."""
from typing import Any


def sample_field(sample: Any, name: str, default=None):
    if isinstance(sample, dict):
        return sample.get(name, default)
    return getattr(sample, name, default)
