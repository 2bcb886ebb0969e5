from .backbone_layer_decay import BackboneLayerDecayOptimWrapperConstructor  # noqa: F401
