from .data_sample import GranDataSample

__all__ = ['GranDataSample']
