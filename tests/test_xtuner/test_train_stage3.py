"""Stage 3 as docs/evaluation.md tells a user: GranSynth -> LLaVA instruction JSON,
`python -m xtuner.tools.train` the tiny stage-3 config from a stage-2 checkpoint, export to transformers;
the baseline is the same config with a plain SigLIP tower. `xtuner train` can exit 0 after a crash, so the
test checks what the run leaves behind."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch
from stage2_assets import ROOT, build_llava, env

CFG = osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs',
               'granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3.py')
WORK = 'work_dirs/granvit_tiny_qwen2_tiny_full_instruct_cpu_stage3'
SHORT = ['train_cfg.max_iters=3', 'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=3',
         'default_hooks.logger.interval=1']

pytestmark = pytest.mark.slow


def _run(cwd, *cmd, timeout=600):
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, env=env(), capture_output=True,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, tiny_llm_dir, encoder_dir):
    """A project directory after `make stage2-demo`: GranSynth, the tiny LLM, the tower, a stage-2
    checkpoint."""
    from granvit_mm.toy.gran_synth import generate
    ws = tmp_path_factory.mktemp('ws3')
    generate(str(ws / 'data' / 'gran_synth'), num_train=8, num_val=4, image_size=96, seed=1)
    shutil.copytree(tiny_llm_dir, ws / 'data' / 'tiny_llm')
    shutil.copytree(encoder_dir, ws / 'work_dirs' / 'granvit_pretrain_tiny' / 'hf_encoder')
    model = build_llava(tiny_llm_dir, encoder_dir)
    with torch.no_grad():  # a "trained" stage 2: LLM and projector moved away from their starts
        for p in list(model.llm.parameters()) + list(model.projector.parameters()):
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    stage2 = ws / 'work_dirs' / 'granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2' / 'iter_1000.pth'
    os.makedirs(stage2.parent)
    torch.save(dict(state_dict=model.state_dict(), meta={}), stage2)
    _run(ws, osp.join(ROOT, 'tools/misc/make_gran_synth_instruct.py'))
    return ws


def test_stage3_continues_stage2_and_exports(workspace):
    ws = workspace
    log = _run(ws, '-m', 'xtuner.tools.train', CFG, '--cfg-options', *SHORT)
    assert 'Load pretrained weight from work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2' in log
    losses = [float(x) for x in re.findall(r'Iter\(train\) \[\d+/3\].*?loss: ([\d.]+)', log)]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses), log[-3000:]
    ckpt = ws / WORK / 'iter_3.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    stage2 = torch.load(ws / 'work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2/iter_1000.pth',
                        map_location='cpu', weights_only=True)['state_dict']
    assert not any(k.startswith('visual_encoder.') for k in state)  # frozen by default
    key = next(k for k in state if k.startswith('llm.') and k.endswith('mlp.up_proj.weight'))
    step = (state[key] - stage2[key]).abs().max()
    # trained a little, from stage 2's weights (which are 0.05-noise away from the base)
    assert 0 < step < 0.01

    _run(ws, osp.join(ROOT, 'tools/model_converters/xtuner_to_hf_llava.py'), CFG, ckpt, 'hf_llava')
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(ws / 'hf_llava').eos_token == '<|im_end|>'


def test_baseline_is_one_tower_away(workspace, tmp_path):
    """The same config on a plain SigLIP vision tower (no stage-1 projector), ViT trainable: it trains."""
    from granvit_mm.toy.tiny_siglip import build_tiny_siglip
    siglip = tmp_path / 'siglip'
    build_tiny_siglip(64, 0, image_size=64, patch_size=8).save_pretrained(siglip)
    log = _run(workspace, '-m', 'xtuner.tools.train', CFG, '--work-dir', tmp_path / 'work', '--cfg-options',
               *SHORT,
               f'model.visual_encoder.pretrained_model_name_or_path={siglip}', 'model.pretrained_pth=None',
               'model.freeze_visual_encoder=False')
    assert len(re.findall(r'Iter\(train\) \[\d+/3\]', log)) == 3, log[-3000:]
    state = torch.load(tmp_path / 'work' / 'iter_3.pth', map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('visual_encoder.') for k in state)  # trainable ViT is saved


def test_paper_scale_config_states_the_protocol():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs',
                                   'granvit_siglip2_l16_512_qwen2.5_1.5b_instruct_full_e1_gpu8_stage3.py'))
    assert cfg.llm_name_or_path == 'Qwen/Qwen2.5-1.5B-Instruct' and cfg.image_size == 512
    assert cfg.model.freeze_visual_encoder is True and cfg.model.pretrained_pth == cfg.stage2_checkpoint
    assert cfg.batch_size * cfg.accumulative_counts * 8 == 128 and cfg.max_epochs == 1 and cfg.lr == 2e-5
    dataset = cfg.train_dataloader.dataset
    assert dataset.type.__name__ == 'LLaVAInstructDataset' and dataset.num_visual_tokens == 1024
    assert dataset.max_length == 4096 and dataset.on_bad_record == 'skip'
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['visual_encoder.'].lr_mult == 0.1
    assert 'open-llava-next' in cfg.data_path
