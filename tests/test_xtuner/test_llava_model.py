"""GranViTLLaVAModel: XTuner's LLaVA with GranViT's tokens, the stage-1 projector carried in, built on CPU."""
import os.path as osp

import pytest
import torch
from stage2_assets import build_llava, sample_images

from granvit_mm.core.chat_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from granvit_mm.core.image_input import to_model_input


def _pixels(images=None):
    return torch.stack([torch.from_numpy(to_model_input(im, 64)[0]) for im in images or sample_images()])


def test_builds_on_cpu_frozen_vit_and_stage1_projector(tiny_llm_dir, stage1_ckpt, encoder_dir):
    from xtuner.model import LLaVAModel
    model = build_llava(tiny_llm_dir, encoder_dir)
    assert isinstance(model, LLaVAModel) and 'LLaVAModel' in type(model).__name__  # pth_to_hf matches on it
    assert model.llm.config._attn_implementation == 'sdpa'  # chosen without probing torch.cpu bf16 support
    assert not any(p.requires_grad for p in model.visual_encoder.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())
    assert all(p.requires_grad for p in model.llm.parameters())
    stage1 = torch.load(stage1_ckpt, map_location='cpu', weights_only=True)['state_dict']
    for k, v in model.projector.state_dict().items():
        torch.testing.assert_close(v, stage1[f'projector.{k}'], rtol=0, atol=0)
    # checkpoints hold what trains: projector + LLM, not the frozen ViT
    keys = model.state_dict().keys()
    assert any(k.startswith('projector.') for k in keys) and any(k.startswith('llm.') for k in keys)
    assert not any(k.startswith('visual_encoder.') for k in keys)


def test_loss_sees_every_patch_and_trains_projector_and_llm(tiny_llm_dir, encoder_dir):
    model = build_llava(tiny_llm_dir, encoder_dir)
    model.train()
    seen = {}
    model.llm.register_forward_pre_hook(lambda m, a, kw: seen.update(embeds=kw['inputs_embeds']),
                                        with_kwargs=True)
    ids = torch.tensor([[5, 6, IMAGE_TOKEN_INDEX, 7, 8, 9], [5, IMAGE_TOKEN_INDEX, 7, 8, 9, 10]])
    labels = torch.tensor([[IGNORE_INDEX] * 4 + [8, 9], [IGNORE_INDEX] * 3 + [8, 9, 10]])
    data_pixels = _pixels(sample_images(2))
    data = dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids, dtype=torch.bool),
                pixel_values=data_pixels)
    loss = model(data, mode='loss')['loss']
    assert torch.isfinite(loss)
    assert seen['embeds'].shape[1] == 5 + 64  # 5 text tokens + all (64 / 8)^2 patches (XTuner's drops one)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert model.llm.get_input_embeddings().weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.visual_encoder.parameters())
    # the value: each row's image tokens spliced in at its <image>, scored as a causal LM would, by hand
    with torch.no_grad():
        hidden = model.visual_encoder(data_pixels, output_hidden_states=True).hidden_states[-1]  # every patch
        visual = model.projector(hidden)
        embed = model.llm.get_input_embeddings()
        rows, row_labels = [], []
        for i, (row, lab) in enumerate(zip(ids, labels)):
            k = int((row == IMAGE_TOKEN_INDEX).nonzero())
            rows.append(torch.cat([embed(row[:k]), visual[i], embed(row[k + 1:])]))
            image_labels = torch.full((visual.shape[1], ), IGNORE_INDEX)
            row_labels.append(torch.cat([lab[:k], image_labels, lab[k + 1:]]))
        logits = model.llm(inputs_embeds=torch.stack(rows)).logits
        targets = torch.stack(row_labels)[:, 1:].flatten()
        expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets,
                                                     ignore_index=IGNORE_INDEX)
        torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
        swapped = dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids, dtype=torch.bool),
                       pixel_values=data_pixels.flip(0))
        other = float(model(swapped, mode='loss')['loss'])
        assert abs(other - float(expected)) > 1e-4  # each row sees its own image


def test_greedy_answers_batch_equals_one_by_one(tiny_llm_dir, encoder_dir):
    from transformers import AutoTokenizer

    from granvit_mm.core.prompts import caption2bbox_question, global_caption_question
    from granvit_mm.xtuner.llava_model import greedy_answers
    model = build_llava(tiny_llm_dir, encoder_dir).train()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    pixels = _pixels()
    questions = [[global_caption_question(), caption2bbox_question('a red circle')], ['what is it'], []]
    batched = greedy_answers(model, tokenizer, pixels, questions, max_new_tokens=6)
    single = [[greedy_answers(model, tokenizer, pixels[i:i + 1], [[q]], max_new_tokens=6)[0][0] for q in qs]
              for i, qs in enumerate(questions)]
    assert batched == single and [len(a) for a in batched] == [2, 1, 0]
    assert any(a for answers in batched for a in answers)  # real text was generated
    assert model.training  # generation ran in eval mode and gave the mode back


def test_wrong_inputs_fail_clearly(tiny_llm_dir, encoder_dir, tmp_path):
    with pytest.raises(ValueError, match='not both'):
        build_llava(tiny_llm_dir, encoder_dir, pretrained_pth=str(tmp_path / 'x.pth'))
    with pytest.raises(FileNotFoundError, match='granvit_to_hf.py'):
        build_llava(tiny_llm_dir, encoder_dir, projector_path=str(tmp_path / 'missing'))
    with pytest.raises(ValueError, match='trained with visual tokens from layer -1'):
        build_llava(tiny_llm_dir, encoder_dir, visual_select_layer=-2)
    with pytest.raises(ValueError, match='visual layer 0'):
        build_llava(tiny_llm_dir, encoder_dir, visual_select_layer=0)
    from xtuner.model.modules import ProjectorConfig, ProjectorModel
    wrong = ProjectorModel(ProjectorConfig(visual_hidden_size=32, llm_hidden_size=64, depth=2))
    wrong.save_pretrained(str(tmp_path / 'wrong'))
    with pytest.raises(ValueError, match='does not fit'):
        build_llava(tiny_llm_dir, encoder_dir, projector_path=str(tmp_path / 'wrong'))


def test_projector_from_a_stage1_checkpoint_directly(tiny_llm_dir, stage1_ckpt, encoder_dir):
    a = build_llava(tiny_llm_dir, encoder_dir)
    b = build_llava(tiny_llm_dir, encoder_dir, projector_path=stage1_ckpt)
    for k, v in a.projector.state_dict().items():
        torch.testing.assert_close(v, b.projector.state_dict()[k], rtol=0, atol=0)
    assert osp.isfile(osp.join(encoder_dir, 'projector', 'model.safetensors'))
