"""Convert a Hugging Face SigLIP / SigLIP2 vision tower into a GranViT checkpoint.

    python tools/model_converters/siglip2_to_granvit.py SRC_DIR DST.pth

SRC_DIR is a ``save_pretrained`` directory of ``SiglipVisionModel``, ``SiglipModel``, ``Siglip2VisionModel``
or ``Siglip2Model`` (``model.safetensors``, sharded safetensors, or ``pytorch_model.bin``); only the vision
tower is kept and its attention-pool head is dropped. DST holds ``{'state_dict': ..., 'meta': {...}}`` of
tensors and plain Python only, so ``torch.load(DST, weights_only=True)`` and
``GranViT(**meta['granvit_kwargs'], init_cfg=dict(type='Pretrained', checkpoint=DST))`` load it with no
missing keys. The key map and the SigLIP2 NaFlex patch-weight reshape are documented in
``granvit_mm/core/siglip_keys.py``.
"""
import argparse
import os
import os.path as osp
from typing import Dict, Tuple

import torch

from granvit_mm.core.checkpoint_reader import HF_WEIGHT_FILES, read_checkpoint, read_hf_config
from granvit_mm.core.siglip_keys import convert_siglip_vision, granvit_kwargs, is_naflex, strip_vision_prefix


def read_hf_dir(src: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """State dict and config.json of an HF model directory; never unpickles arbitrary objects."""
    if not any(osp.isfile(osp.join(src, name)) for name in HF_WEIGHT_FILES):
        raise FileNotFoundError(f'no model.safetensors(.index.json) or pytorch_model.bin in {src}')
    return read_checkpoint(src), read_hf_config(src)


def convert(src: str, dst: str) -> dict:
    """Convert ``src`` (HF directory) to ``dst``; returns the GranViT kwargs that reproduce the tower."""
    hf_state, config = read_hf_dir(src)
    vision = strip_vision_prefix(hf_state)
    kwargs = granvit_kwargs(vision, config)
    state_dict = convert_siglip_vision(vision)
    meta = dict(
        granvit_kwargs=kwargs,
        source=osp.basename(osp.normpath(src)),
        hf_model_type=str(config.get('model_type', 'unknown')),
        naflex=is_naflex(vision),
        dropped=sorted(k for k in vision if k.startswith('head.')),
        converter='tools/model_converters/siglip2_to_granvit.py')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), dst)
    return kwargs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='Hugging Face SigLIP/SigLIP2 model directory')
    parser.add_argument('dst', help='output GranViT checkpoint (.pth)')
    args = parser.parse_args()
    kwargs = convert(args.src, args.dst)
    print(f'saved {args.dst}')
    print(f"arch={kwargs['arch']}")
    print(f"img_size={kwargs['img_size']}")
    print(f"patch_size={kwargs['patch_size']}")
    extra = {k: v for k, v in kwargs.items() if k not in ('arch', 'img_size', 'patch_size')}
    print('backbone=' + repr(dict(type='granvit.GranViT', **kwargs,
                                  init_cfg=dict(type='Pretrained', checkpoint=args.dst))))
    if extra:
        print(f'other kwargs: {extra}')


if __name__ == '__main__':
    main()
