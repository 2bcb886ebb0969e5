# Tiny GranViT stage-1 model for CPU: a 4-layer 64-wide ViT and a 2-layer 64-wide Qwen2
# (tools/misc/make_tiny_llm.py).
model = dict(
    type='GranViTPretrainer',
    backbone=dict(type='GranViT', arch='tiny', img_size=64, patch_size=8, out_type='featmap'),
    projector=dict(type='VisionProjector'),  # channels: ViT width -> LLM width, filled in by the algorithm
    head=dict(
        type='RegionARHead',
        llm_path='data/tiny_llm',
        llm_dtype='float32',
        attn_implementation='sdpa',
        max_length=0,
        max_new_tokens=16),
    # (ours, tiny) scale-free MSE: the visual tokens are the pre-norm residual stream, and with raw MSE the
    # EMA teacher's crop targets (about 1.15x the student's RoI norm) pull student and teacher up together:
    # token RMS 3.4 -> 29 in 600 iterations and ROUGE-L -8 (docs/pretraining.md,
    # tools/analysis_tools/feature_scale.py)
    distill_loss=dict(type='RegionDistillLoss', crop_size=32, roi_size=4, max_regions=4, loss_weight=1.0,
                      feature_norm='layernorm'),
    ema_momentum=0.1,  # MMEngine momentum = 1 - paper alpha (0.9)
    # HF hidden_states[-1]: last block before the final norm (granvit_mm/core/visual_tokens.py)
    visual_layer=-1,
    blind=False)
