"""SigLIP2 NaFlex -> GranViT against transformers' own ``Siglip2VisionModel``, which transformers 4.48 lacks:
the reference runs in the transformers 5.x environment (`make tf5-env`), the conversion here; the same check
as test_siglip2_conversion.py::test_siglip2_naflex_model_if_available, which skips under 4.48."""
import os
import os.path as osp
import subprocess

import pytest
import torch

from granvit_mm.core.siglip_keys import convert_siglip_vision, granvit_kwargs
from granvit_mm.models.backbones import GranViT

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TF5_PYTHON = os.environ.get('GRANVIT_TF5_PYTHON', osp.join(ROOT, '.venv-tf5', 'bin', 'python'))
TOL = 1e-4
REFERENCE = '''
import sys, torch, transformers
from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionModel
torch.manual_seed(0)
config = transformers.Siglip2VisionConfig(hidden_size=36, intermediate_size=80, num_hidden_layers=2,
                                          num_attention_heads=3, patch_size=7, num_patches=16)
hf = Siglip2VisionModel(config).eval()
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # random LayerNorm affines and biases too, so a swapped mapping cannot pass
    for name, p in hf.named_parameters():
        p.add_(torch.randn(p.shape, generator=g) * (0.2 if 'norm' in name else 0.05))
img = torch.randn(1, 3, 35, 42, generator=g)  # a 5x6 grid: the 4x4 table resized (antialiased bilinear)
patches = img.permute(0, 2, 3, 1).reshape(1, 5, 7, 6, 7, 3).permute(0, 1, 3, 2, 4, 5).reshape(1, 30, -1)
with torch.no_grad():
    ref = hf(pixel_values=patches, pixel_attention_mask=torch.ones(1, 30, dtype=torch.long),
             spatial_shapes=torch.tensor([[5, 6]])).last_hidden_state
torch.save(dict(state_dict=hf.state_dict(), config=config.to_dict(), img=img, ref=ref,
                version=transformers.__version__), sys.argv[1])
'''


@pytest.mark.skipif(not osp.exists(TF5_PYTHON),
                    reason=f'no transformers 5.x environment at {TF5_PYTHON}: run '
                    '`make tf5-env` (or set GRANVIT_TF5_PYTHON)')
def test_siglip2_naflex_against_transformers_5(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    proc = subprocess.run([TF5_PYTHON, '-c', REFERENCE, str(tmp_path / 'ref.pt')], env=env,
                          capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = torch.load(tmp_path / 'ref.pt', weights_only=True)
    assert ref['version'].startswith('5.')
    model = GranViT(**granvit_kwargs(ref['state_dict'], ref['config']), out_type='raw').eval()
    model.load_state_dict(convert_siglip_vision(ref['state_dict']))
    with torch.no_grad():
        out = model(ref['img'])[0]
    assert out.shape == ref['ref'].shape == (1, 30, 36)
    assert (out - ref['ref']).abs().max() <= TOL
