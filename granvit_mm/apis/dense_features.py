"""Dense features of the encoder alone, for any GranViT checkpoint: stage 1, a downstream config's backbone,
or a SigLIP2 tower converted by ``tools/model_converters/siglip2_to_granvit.py``.

The image goes through the config's test pipeline (:mod:`.preprocessing`; without a config, stage 1's
pad-to-square + resize + normalisation at the ViT's size); the map covers the padded square, and
:meth:`DenseFeatures.image_features` crops it to the patches that hold the image itself. For a stage-1
checkpoint the map is exactly the visual tokens the projector reads (:mod:`granvit_mm.core.visual_tokens`).
"""
import copy
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch

from granvit_mm.core.checkpoint_layout import STAGE1_VIT_PREFIXES, split_checkpoint, strip_prefix
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.visual_tokens import DEFAULT_VISUAL_LAYER, granvit_token_kwargs

from .checkpoint import load_checkpoint_dict
from .config_utils import load_config
from .inputs import DEFAULT_MAX_PIXELS, as_list, load_image
from .preprocessing import PipelinePreprocessor

__all__ = ['DenseFeatures', 'DenseFeatureExtractor']


@dataclass
class DenseFeatures:
    """(C, g, g) features over the padded square input of side ``geometry.size`` (patch ``patch_size``)."""
    featmap: torch.Tensor
    geometry: SquareGeometry
    patch_size: int

    @property
    def image_grid(self) -> tuple:
        """(rows, cols) of patches at least half covered by the image (the rest see mostly padding)."""
        g = self.geometry
        rows = math.floor(g.height * g.scale / self.patch_size + 0.5)
        cols = math.floor(g.width * g.scale / self.patch_size + 0.5)
        return min(max(rows, 1), self.featmap.shape[1]), min(max(cols, 1), self.featmap.shape[2])

    def image_features(self) -> torch.Tensor:
        """(C, rows, cols): the map cropped to the image (mostly-padding patches dropped)."""
        rows, cols = self.image_grid
        return self.featmap[:, :rows, :cols]


class DenseFeatureExtractor:
    """Build a GranViT from a config / converter kwargs, load a checkpoint, return dense maps.

    Args:
        checkpoint: a .pth file (or a work dir: its best/latest checkpoint).
        config: a config file or Config whose ``model.backbone`` is a GranViT (any OpenMMLab config works).
        backbone: GranViT kwargs (e.g. the ``backbone=dict(...)`` the SigLIP2 converter prints); wins over
            ``config``. Without either, the checkpoint's ``meta['granvit_kwargs']`` (converter output) is
            used.
        prefix: state-dict prefix of the ViT; None: ``'backbone.'`` when present, else none. Use
            ``'teacher.module.'`` for a stage-1 checkpoint's EMA teacher.
        input_size: square input side; default the config's test pipeline size, else the ViT's ``img_size``.
        out_index: which block's output (0-based, negative from the end). Default: for a stage-1 config, its
            visual tokens (``model.visual_layer``, :mod:`granvit_mm.core.visual_tokens`); otherwise the
            config's / converter's setting (the last of several).
        final_norm: apply the ViT's final LayerNorm (SigLIP's ``post_layernorm``); default as the source says
            (stage 1's visual tokens: off; a converted SigLIP2 tower: on). ``False`` on a SigLIP2 tower gives
            the tokens stage 1 starts from.
        device: torch device.
        max_pixels: larger input images are refused.
    """

    def __init__(self, checkpoint: str, config=None, backbone: Optional[dict] = None,
                 prefix: Optional[str] = None, input_size: Optional[int] = None,
                 out_index: Optional[int] = None, final_norm: Optional[bool] = None,
                 device: Union[str, torch.device] = 'cpu',
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        from granvit_mm.registry import MODELS
        state, meta = split_checkpoint(load_checkpoint_dict(checkpoint))
        kwargs, cfg = self._backbone_kwargs(config, backbone, meta)
        if out_index is not None:
            kwargs['out_indices'] = out_index
        elif isinstance(kwargs.get('out_indices'), (list, tuple)):  # e.g. a detector's multi-level backbone
            kwargs['out_indices'] = kwargs['out_indices'][-1]
        if final_norm is not None:
            kwargs['final_norm'] = final_norm
        kwargs.update(type='granvit.GranViT', out_type='featmap', init_cfg=None, frozen_stages=-1)
        if prefix is None:
            student = STAGE1_VIT_PREFIXES['student']
            prefix = student if any(k.startswith(student) for k in state) else ''
        vit_state = strip_prefix(state, prefix) if prefix else state
        if not vit_state:
            raise ValueError(f'no weights with prefix {prefix!r} in {checkpoint}')
        if not kwargs.get('final_norm', True):  # e.g. a SigLIP2 tower read before its post_layernorm
            vit_state = {k: v for k, v in vit_state.items() if not k.startswith('norm.')}
        vit = MODELS.build(kwargs)
        missing, unexpected = vit.load_state_dict(vit_state, strict=False)
        if missing or unexpected:
            raise ValueError(f'{checkpoint} (prefix {prefix!r}) does not fit GranViT({kwargs}): missing '
                             f'{missing[:4]}, unexpected {unexpected[:4]}')
        self.backbone = vit.eval().to(torch.device(device))
        preprocessor = PipelinePreprocessor.from_config(cfg, size=input_size, default_size=vit.img_size[0]) \
            if cfg is not None else PipelinePreprocessor.default(input_size or vit.img_size[0])
        self._setup(lambda pixels: self.backbone(pixels)[-1], preprocessor, int(vit.patch_size), device,
                    max_pixels)

    @classmethod
    def from_model(cls, model, preprocessor, device='cpu',
                   max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> 'DenseFeatureExtractor':
        """The encoder of an already loaded chat model (its ``dense_features``), e.g. the inferencer's own."""
        extractor = cls.__new__(cls)
        extractor._setup(model.dense_features, preprocessor, int(model.patch_size), device, max_pixels)
        return extractor

    def _setup(self, encode, preprocessor, patch_size: int, device, max_pixels) -> None:
        self.device = torch.device(device)
        self.encode = encode  # (B, 3, S, S) pixels -> (B, C, S/p, S/p) map
        self.preprocessor = preprocessor
        self.input_size = int(preprocessor.size)
        self.patch_size = patch_size
        self.max_pixels = max_pixels

    @staticmethod
    def _backbone_kwargs(config, backbone: Optional[dict], meta: dict) -> tuple:
        if backbone is not None:
            kwargs = dict(copy.deepcopy(backbone))
            return kwargs, None
        if config is not None:
            cfg = load_config(config)
            vit_cfg = (cfg.get('model') or {}).get('backbone')
            if not vit_cfg or str(vit_cfg.get('type', '')).split('.')[-1] != 'GranViT':
                raise ValueError(f'config {config} has no GranViT model.backbone')
            kwargs = dict(copy.deepcopy(vit_cfg.to_dict() if hasattr(vit_cfg, 'to_dict') else vit_cfg))
            if str(cfg.model.get('type', '')).split('.')[-1] == 'GranViTPretrainer':  # its visual tokens
                kwargs.update(granvit_token_kwargs(cfg.model.get('visual_layer', DEFAULT_VISUAL_LAYER)))
            return kwargs, cfg
        if meta.get('granvit_kwargs'):
            return dict(meta['granvit_kwargs']), None
        raise ValueError('cannot tell the ViT architecture: pass a config (model.backbone), backbone kwargs, '
                         'or a checkpoint from tools/model_converters/siglip2_to_granvit.py '
                         '(it stores them in meta)')

    @torch.no_grad()
    def features(self, images: Sequence[np.ndarray]) -> List[DenseFeatures]:
        """Decoded RGB uint8 images -> one :class:`DenseFeatures` each (one forward for the batch)."""
        pixels, geoms = self.preprocessor(images, self.device)
        maps = self.encode(pixels).float().cpu()
        return [DenseFeatures(m, g, self.patch_size) for m, g in zip(maps, geoms)]

    def __call__(self, inputs: Any, batch_size: int = 1) -> List[DenseFeatures]:
        """One image or a list (path, PIL image or HxWx3 uint8) -> list of :class:`DenseFeatures`."""
        images = [load_image(x, self.max_pixels) for x in as_list(inputs)]
        out: List[DenseFeatures] = []
        for i in range(0, len(images), max(1, batch_size)):
            out += self.features(images[i:i + max(1, batch_size)])
        return out
