"""Export a GranViT stage-1 checkpoint as a Hugging Face ``SiglipVisionModel`` directory (stage 2's encoder).

    python tools/model_converters/granvit_to_hf.py CHECKPOINT OUT_DIR [--which student|teacher] [--config CFG]
    python tools/model_converters/granvit_to_hf.py --from-init --config CFG OUT_DIR

OUT_DIR gets:
- the tower (``config.json`` + ``model.safetensors``): ``SiglipVisionModel.from_pretrained(OUT_DIR)`` loads it
  as it is, and its ``hidden_states[visual_layer]`` (recorded as ``granvit_visual_layer`` in the config; -1 by
  default) are exactly the stage-1 visual tokens (granvit_mm/core/visual_tokens.py);
- the stage-1 image processor (pad right/bottom to a square, resize, SigLIP normalisation):
  ``AutoImageProcessor.from_pretrained(OUT_DIR, trust_remote_code=True)``;
- ``projector/``: the stage-1 projector as XTuner's ``ProjectorModel``; the stage-2 configs load it
  (``projector_path``), so stage 2 starts from it.

``--which student`` (default) exports the ViT that was optimised. With the paper's alpha = 0.9 the EMA teacher
trails the student by about ten steps (it averages, it does not lead), and the projector -- the one carried
into stage 2 -- was trained on the student's tokens, not the teacher's. ``--which teacher`` exports the EMA
copy for comparison. The config comes from the checkpoint (``meta['cfg']``) unless ``--config`` is given.
``--from-init`` exports the ViT stage 1 started from (the config's init checkpoint, or its seeded random init)
with no projector: the baseline "stage 2 without stage 1".

This is the reverse of ``siglip2_to_granvit.py``; the key map is ``granvit_mm/core/siglip_keys.py``.
"""
import argparse
import sys

from granvit_mm.xtuner.encoder import export_encoder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', nargs='?', help='stage-1 checkpoint (work_dirs/.../iter_N.pth)')
    parser.add_argument('out_dir', help='output Hugging Face directory')
    parser.add_argument('--which', choices=['student', 'teacher'], default='student',
                        help='the ViT to export (default student: see the module docstring)')
    parser.add_argument('--config', help='stage-1 config (default: the one stored in the checkpoint)')
    parser.add_argument('--from-init', action='store_true',
                        help='export the ViT stage 1 starts from (needs --config; no checkpoint)')
    args = parser.parse_args(argv)
    if args.from_init and not args.config:
        parser.error('--from-init needs --config')
    if not args.from_init and not args.checkpoint:
        parser.error('give a stage-1 checkpoint (or --from-init --config CFG)')
    try:
        info = export_encoder(None if args.from_init else args.checkpoint, args.out_dir, args.which,
                              args.config, args.from_init)
    except (FileNotFoundError, KeyError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'saved SiglipVisionModel + GranViTImageProcessor to {args.out_dir}'
          + (f' and the stage-1 projector to {args.out_dir}/projector' if info['projector'] else ''))
    print(f"which={info['which']} visual_layer={info['visual_layer']} image_size={info['image_size']} "
          f"patch_size={info['patch_size']} hidden_size={info['hidden_size']}")


if __name__ == '__main__':
    main()
