"""Export a trained GranViT stage-2 (XTuner) checkpoint to transformers' LLaVA format.

    python tools/model_converters/xtuner_to_hf_llava.py CONFIG CHECKPOINT OUT_DIR

CONFIG is the stage-2 (or stage-3) XTuner config the checkpoint was trained with
(projects/granvit_xtuner/configs/...), CHECKPOINT its ``iter_N.pth`` (or a DeepSpeed checkpoint directory,
which needs deepspeed installed); ``--cfg-options`` overrides it as in training. OUT_DIR
gets a ``LlavaForConditionalGeneration`` (GranViT as a ``SiglipVisionModel``, the 2-layer projector, the LLM
with LoRA merged) and a ``LlavaProcessor`` (stage-1 image pre-processing, the XTuner chat template):

    from transformers import AutoProcessor, LlavaForConditionalGeneration
    model = LlavaForConditionalGeneration.from_pretrained(OUT_DIR)
    processor = AutoProcessor.from_pretrained(OUT_DIR, trust_remote_code=True)  # GranViTImageProcessor
    prompt = processor.apply_chat_template([{'role': 'user', 'content': '<image>\\n' + question}])
    inputs = processor(images=image, text=prompt, return_tensors='pt')
    answer = processor.decode(model.generate(**inputs, max_new_tokens=32)[0, inputs['input_ids'].shape[1]:],
                              skip_special_tokens=True)

QLoRA checkpoints are exported through an unquantized LLM (the config's ``quantization_config`` is dropped and
the LoRA weights merged in full precision). ``xtuner convert pth_to_hf CONFIG CHECKPOINT OUT_DIR --save-format
huggingface --fp32`` writes the same export (without ``--fp32``: in float16, as XTuner's formats).
"""
import argparse
import sys

from mmengine.config import DictAction


def export_config(config: str, cfg_options: dict = None):
    """The stage-2 config as the export builds it: no QLoRA quantisation (LoRA is merged in full precision)
    and no activation checkpointing; the checkpoint then supplies every trained weight."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.llm.pop('quantization_config', None)
    cfg.model.use_activation_checkpointing = False
    return cfg


def convert(config: str, checkpoint: str, out_dir: str, trust: bool = False, dtype: str = 'auto',
            cfg_options: dict = None) -> str:
    """Build the model once (empty, then the checkpoint's and the frozen parts' weights) and export it."""
    from granvit_mm.xtuner.hf_llava import save_hf_llava
    from granvit_mm.xtuner.stage2_eval import load_stage2
    cfg = export_config(config, cfg_options)
    model, _ = load_stage2(cfg, checkpoint, trust=trust)
    return save_hf_llava(model, cfg, out_dir, dtype=None if dtype == 'auto' else dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the stage-2 XTuner config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='iter_N.pth of xtuner train (or a DeepSpeed checkpoint directory)')
    parser.add_argument('out_dir', help='output directory (LlavaForConditionalGeneration + LlavaProcessor)')
    parser.add_argument('--dtype', default='auto', choices=['auto', 'float32', 'bfloat16', 'float16'],
                        help='weights dtype of the export (auto: as the config builds the LLM)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle the checkpoint (only for files you trust); default: safe loading')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config settings, k=v (e.g. the vision tower of a baseline encoder: '
                             'model.visual_encoder.pretrained_model_name_or_path=DIR)')
    args = parser.parse_args(argv)
    try:
        out = convert(args.config, args.checkpoint, args.out_dir, args.trust_checkpoint, args.dtype,
                      args.cfg_options)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:  # bad input: no traceback
        sys.exit(f'error: {err}')
    print(f'saved LlavaForConditionalGeneration + LlavaProcessor to {out}')


if __name__ == '__main__':
    main()
