from .granvit import GranViT  # noqa: F401

__all__ = ['GranViT']
