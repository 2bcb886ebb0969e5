"""Layer-wise lr decay for detectors and segmentors whose backbone is a GranViT.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` needs ``get_layer_depth`` on the top-level model,
which mmdet/mmseg models lack; ViTDet's recipe decays the backbone's lr by 0.7 per block. This constructor
asks ``model.backbone.get_layer_depth`` instead, so everything outside the backbone (neck, heads) keeps the
full lr.
"""
from functools import partial

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

from granvit_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """``paramwise_cfg=dict(layer_decay_rate=0.7, ...)``: depth from the backbone, heads at the last depth."""

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if prefix == '' and get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(f'{type(module).__name__} has no backbone with get_layer_depth '
                                '(a GranViT or an mmpretrain ViT) for layer-wise lr decay')
            get_layer_depth = partial(backbone.get_layer_depth, prefix='backbone.')
        super().add_params(params, module, prefix, get_layer_depth, **kwargs)
