"""Stage 2 through XTuner: GranViT as the LLaVA vision encoder (projector + LLM trained on Caption2Bbox).

Import the modules directly (XTuner configs do, one import per line); this package imports nothing itself, so
``import granvit_mm.xtuner`` stays cheap and XTuner is only needed by what uses it:

- ``llava_model``: ``GranViTLLaVAModel`` (XTuner's ``LLaVAModel`` with the GranViT visual tokens, the
  stage-1 projector carried in, CPU-safe build) and ``greedy_answers``;
- ``encoder``: stage-1 checkpoint -> ``SiglipVisionModel`` + XTuner ``ProjectorModel`` (the export);
- ``image_processor``: ``GranViTImageProcessor``, the stage-1 pre-processing as an HF image processor;
- ``hf_llava``: a trained model -> transformers' ``LlavaForConditionalGeneration`` + ``LlavaProcessor``;
- ``gran_llava_dataset`` / ``gran_conversation``: Gran JSONL -> XTuner LLaVA items (Caption2Bbox + global
  caption), lazily; ``stage2_eval``: greedy evaluation of a stage-2 checkpoint.
"""
