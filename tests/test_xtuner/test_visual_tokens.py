"""One definition of the visual tokens: stage 1, the XTuner model and transformers' LLaVA give the same
tensor.

The three paths, for the same image:
1. stage 1: the stage-1 pipeline (``GranSquareResize``, ``ImgDataPreprocessor``) -> ``GranViTPretrainer``;
2. stage 2: ``GranViTImageProcessor`` -> ``GranViTLLaVAModel.visual_tokens`` (the exported tower in XTuner);
3. transformers: ``LlavaForConditionalGeneration`` with the exported ``SiglipVisionModel`` and the config's
   ``vision_feature_layer`` / ``vision_feature_select_strategy`` (``get_image_features``).
"""
import numpy as np
import pytest
import torch
from stage2_assets import build_llava, build_stage1, sample_images

from granvit_mm.core import visual_tokens as vt
from granvit_mm.models.backbones import GranViT

TOL = 1e-5


# ---------------------------------------------------------------------------------------------- the contract
def test_layer_counts_like_hf_hidden_states():
    assert vt.DEFAULT_VISUAL_LAYER == -1 and vt.HF_SELECT_STRATEGY == 'full'
    assert [vt.granvit_out_index(i) for i in (-1, -2, 1, 4)] == [-1, -2, 0, 3]
    assert vt.granvit_token_kwargs(-2) == dict(out_indices=-2, final_norm=False)
    assert vt.hf_llava_kwargs(-1) == dict(vision_feature_layer=-1, vision_feature_select_strategy='full')
    assert vt.num_visual_tokens(512, 16) == 1024 and vt.num_visual_tokens(30, 7) == 16


@pytest.mark.parametrize('bad, err',
                         [(0, ValueError), (1.0, TypeError), (True, TypeError), ('-1', TypeError)])
def test_bad_layers_are_refused(bad, err):
    with pytest.raises(err, match='visual layer'):
        vt.check_layer(bad)


def test_select_keeps_every_token_and_checks_range():
    hidden = [torch.full((1, 5, 2), float(i)) for i in range(4)]  # embeddings + 3 blocks
    assert vt.select_visual_tokens(hidden, -1).shape == (1, 5, 2)  # no token dropped (no CLS)
    assert float(vt.select_visual_tokens(hidden, -2)[0, 0, 0]) == 2.0
    assert float(vt.select_visual_tokens(hidden, 1)[0, 0, 0]) == 1.0
    with pytest.raises(IndexError, match='out of range'):
        vt.select_visual_tokens(hidden, -5)


@pytest.mark.parametrize('layer', [-1, -2, 1, 3])
def test_granvit_block_equals_hf_hidden_state(layer):
    """Any layer: GranViT with the contract's settings == SiglipVisionModel.hidden_states[layer]."""
    from granvit_mm.xtuner.encoder import to_siglip_vision_model
    torch.manual_seed(0)
    arch = dict(embed_dims=48, num_layers=3, num_heads=4, feedforward_channels=96)
    vit = GranViT(arch=arch, img_size=32, patch_size=8, out_type='raw',
                  **vt.granvit_token_kwargs(layer)).eval()
    with torch.no_grad():
        for name, p in vit.named_parameters():  # non-trivial LayerNorm affines and biases too
            p.add_(torch.randn_like(p) * (0.2 if 'ln' in name else 0.05))
    hf = to_siglip_vision_model(vit, layer)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = vit(x)[0]
        ref = vt.select_visual_tokens(hf(x, output_hidden_states=True).hidden_states, layer)
    assert ours.shape == ref.shape == (2, 16, 48)
    assert (ours - ref).abs().max() <= TOL
    assert ref.abs().mean() > 0.1


# --------------------------------------------------------------------------------------- stage-1 knob
def test_pretrainer_takes_its_tokens_from_the_contract(tiny_llm_dir):
    from granvit_mm.registry import MODELS
    base = dict(type='GranViTPretrainer', distill_loss=None,
                backbone=dict(type='GranViT', arch='tiny', img_size=32, patch_size=8),
                head=dict(type='RegionARHead', llm_path=tiny_llm_dir))
    model = MODELS.build(base)
    assert model.backbone.out_indices == (3, ) and not model.backbone.final_norm
    assert not any(k.startswith('norm.') for k in model.backbone.state_dict())
    assert MODELS.build(dict(base, visual_layer=-2)).backbone.out_indices == (2, )
    with pytest.raises(ValueError, match='model.visual_layer'):
        MODELS.build(dict(base, backbone=dict(base['backbone'], final_norm=True)))
    with pytest.raises(ValueError, match='model.visual_layer'):
        MODELS.build(dict(base, backbone=dict(base['backbone'], out_indices=-2)))


# ------------------------------------------------------------------------------------------ three paths
def _stage1_tokens(model, img):
    """Stage 1's own pipeline: GranSquareResize (uint8) -> the model's ImgDataPreprocessor -> the ViT."""
    from granvit_mm.datasets.transforms import GranSquareResize
    size = model.backbone.img_size[0]
    square = GranSquareResize(size=size).transform(dict(img=img))['img']
    batch = model.data_preprocessor(dict(inputs=[torch.from_numpy(square.transpose(2, 0, 1).copy())]))
    featmap = model.extract_feat(batch['inputs'])
    return featmap.flatten(2).transpose(1, 2), model.visual_embeds(featmap)


def _hf_llava(llava, encoder_dir):
    """transformers' LLaVA around the exported tower + projector, feature selection from its config."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, SiglipVisionModel
    tower = SiglipVisionModel.from_pretrained(encoder_dir)
    config = LlavaConfig(vision_config=tower.config.to_dict(), text_config=llava.llm.config.to_dict(),
                         image_token_index=0, projector_hidden_act='gelu',
                         **vt.hf_llava_kwargs(tower.config.granvit_visual_layer))
    hf = LlavaForConditionalGeneration(config)
    hf.vision_tower = tower
    hf.multi_modal_projector.linear_1.load_state_dict(llava.projector.model[0].state_dict())
    hf.multi_modal_projector.linear_2.load_state_dict(llava.projector.model[2].state_dict())
    return hf.eval()


def test_three_paths_give_the_same_tokens(tiny_llm_dir, stage1_ckpt, encoder_dir):
    from granvit_mm.xtuner.image_processor import GranViTImageProcessor
    stage1 = build_stage1(stage1_ckpt, tiny_llm_dir)
    llava = build_llava(tiny_llm_dir, encoder_dir).eval()
    hf = _hf_llava(llava, encoder_dir)
    processor = GranViTImageProcessor.from_pretrained(encoder_dir)
    for img in sample_images():
        pixels = processor(img, return_tensors='pt')['pixel_values']
        with torch.no_grad():
            tokens1, embeds1 = _stage1_tokens(stage1, img)
            tokens2 = llava.visual_tokens(pixels)
            embeds2 = llava.projector(tokens2)
            hidden = hf.vision_tower(pixels, output_hidden_states=True).hidden_states
            tokens3 = hidden[hf.config.vision_feature_layer]
            embeds3 = hf.get_image_features(pixels, hf.config.vision_feature_layer,
                                            hf.config.vision_feature_select_strategy)
        assert tokens1.shape == tokens2.shape == tokens3.shape == (1, 64, 64)  # (64 / 8)^2: none dropped
        assert (tokens1 - tokens2).abs().max() <= TOL and (tokens1 - tokens3).abs().max() <= TOL
        assert (embeds1 - embeds2).abs().max() <= TOL and (embeds1 - embeds3).abs().max() <= TOL
        assert tokens1.abs().mean() > 0.1 and embeds1.abs().mean() > 0.01
        # XTuner's stock LLaVAModel would have fed the projector tokens[:, 1:]: one patch fewer
        assert tokens2[:, 1:].shape[1] == 63


def test_exported_processor_is_the_stage1_preprocessing(encoder_dir):
    """AutoImageProcessor (trust_remote_code) of the export == core.to_model_input == stage-1 pipeline."""
    from transformers import AutoImageProcessor

    from granvit_mm.core.image_input import PIXEL_MEAN, PIXEL_STD, to_model_input
    from granvit_mm.datasets.transforms import GranSquareResize
    processor = AutoImageProcessor.from_pretrained(encoder_dir, trust_remote_code=True)
    assert type(processor).__name__ == 'GranViTImageProcessor' and processor.size == 64
    from PIL import Image
    for img in sample_images():
        ours = processor(Image.fromarray(img), return_tensors='pt')['pixel_values'][0].numpy()
        np.testing.assert_array_equal(ours, to_model_input(img, 64)[0])
        square = GranSquareResize(size=64).transform(dict(img=img))['img'].astype(np.float32)
        normalised = (square - np.array(PIXEL_MEAN, np.float32)) / np.array(PIXEL_STD, np.float32)
        stage1 = normalised.transpose(2, 0, 1)
        np.testing.assert_allclose(ours, stage1, atol=1e-6)
    with pytest.raises(ValueError, match='uint8'):  # already normalised pixels are refused
        processor(np.full((8, 8, 3), -0.5, np.float32))
