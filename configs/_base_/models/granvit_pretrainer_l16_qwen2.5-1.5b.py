# Paper stage-1 model: SigLIP2 L/16 at 512 px (converted to GranViT) + frozen Qwen2.5-1.5B (docs/method.md).
# Paths are set in the top-level config (`vit_checkpoint`, `llm_path`); missing ones stop the model build with
# instructions.
model = dict(
    type='GranViTPretrainer',
    backbone=dict(
        type='GranViT',
        arch='l',
        img_size=512,
        patch_size=16,
        out_type='featmap',
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=None)),
    projector=dict(type='VisionProjector'),
    head=dict(
        type='RegionARHead',
        llm_path=None,
        llm_dtype='auto',  # bf16 on GPU
        attn_implementation='sdpa',
        gradient_checkpointing=True,
        max_length=2048,
        max_new_tokens=32,
        save_llm=False),  # checkpoints hold the ViT, projector and teacher, not the frozen 1.5B LLM
    distill_loss=dict(type='RegionDistillLoss', crop_size=224, roi_size=7, max_regions=4, loss_weight=1.0),
    ema_momentum=0.1,  # MMEngine momentum = 1 - paper alpha (0.9)
    # visual tokens = HF hidden_states[visual_layer]: last block, before the final LayerNorm, every patch
    # token (granvit_mm/core/visual_tokens.py; stage 2 and the exports select the same tensor)
    visual_layer=-1)
