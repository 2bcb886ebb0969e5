"""End to end, as docs/stage2.md tells a user: export the stage-1 encoder, `python -m xtuner.tools.train` the
tiny stage-2 config, evaluate, export to transformers. `xtuner train` can exit 0 after a crash, so the test
checks what the run leaves behind (checkpoints, logged losses), not just the exit code."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch
from stage2_assets import ROOT, env

CFG = osp.join(ROOT, 'projects', 'granvit_xtuner', 'configs',
               'granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py')
WORK = 'work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2'


def _run(cwd, *cmd, timeout=600):
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def workspace(tmp_path_factory, tiny_llm_dir, stage1_ckpt):
    """A fresh project directory laid out like one after `make demo` (relative paths as in the config)."""
    from granvit_mm.toy.gran_synth import generate
    ws = tmp_path_factory.mktemp('ws')
    generate(str(ws / 'data' / 'gran_synth'), num_train=8, num_val=4, image_size=96, seed=1)
    shutil.copytree(tiny_llm_dir, ws / 'data' / 'tiny_llm')
    os.makedirs(ws / 'work_dirs' / 'granvit_pretrain_tiny')
    shutil.copy(stage1_ckpt, ws / 'work_dirs' / 'granvit_pretrain_tiny' / 'iter_1000.pth')
    return ws


def test_tiny_stage2_trains_evaluates_and_exports(workspace, stage1_ckpt):
    ws = workspace
    _run(ws, osp.join(ROOT, 'tools/model_converters/granvit_to_hf.py'),
         'work_dirs/granvit_pretrain_tiny/iter_1000.pth', 'work_dirs/granvit_pretrain_tiny/hf_encoder')
    log = _run(ws, '-m', 'xtuner.tools.train', CFG, '--cfg-options', 'train_cfg.max_iters=4',
               'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=2',
               'default_hooks.logger.interval=1')
    assert 'Loaded the stage-1 projector' in log
    losses = [float(x) for x in re.findall(r'Iter\(train\) \[\d+/4\].*?loss: ([\d.]+)', log)]
    assert len(losses) == 4 and all(0 < x < 20 for x in losses), log[-3000:]
    ckpt = ws / WORK / 'iter_4.pth'
    assert (ws / WORK / 'iter_2.pth').is_file() and ckpt.is_file()
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']  # safe loader accepts it
    assert not any(k.startswith('visual_encoder.') for k in state)  # the frozen ViT is not saved
    assert any(k.startswith('llm.') for k in state)
    stage1 = torch.load(stage1_ckpt, map_location='cpu', weights_only=True)['state_dict']
    moved = [not torch.equal(state[f'projector.{k}'], stage1[f'projector.{k}'])
             for k in ('model.0.weight', 'model.2.weight')]
    assert all(moved)  # stage 2 started from the stage-1 projector and trained it

    out = _run(ws, osp.join(ROOT, 'tools/analysis_tools/eval_stage2.py'), CFG, ckpt, '--max-images', '2',
               '--max-new-tokens', '8')
    assert re.search(r'Caption2Bbox\s+Acc@IoU0.5\s+[\d.]+\s+mIoU\s+[\d.]+', out), out[-2000:]

    _run(ws, osp.join(ROOT, 'tools/model_converters/xtuner_to_hf_llava.py'), CFG, ckpt, 'hf_llava')
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    hf = LlavaForConditionalGeneration.from_pretrained(ws / 'hf_llava')
    processor = AutoProcessor.from_pretrained(ws / 'hf_llava', trust_remote_code=True)
    from PIL import Image
    image = Image.open(sorted((ws / 'data' / 'gran_synth' / 'images').rglob('*.png'))[0])
    prompt = processor.apply_chat_template([{'role': 'user', 'content': '<image>\nwhat is it'}])
    inputs = processor(images=image, text=prompt, return_tensors='pt')
    assert hf.generate(**inputs, max_new_tokens=4).shape[1] > inputs['input_ids'].shape[1]
