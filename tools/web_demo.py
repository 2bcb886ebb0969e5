"""Start the GranViT web demo (Gradio) on a checkpoint; by default the tiny one `make demo` trains.

    pip install -r requirements/demo.txt          # once: Gradio (an optional extra)
    python tools/web_demo.py                      # http://127.0.0.1:7860
    python tools/web_demo.py CONFIG CHECKPOINT [--compare SIGLIP2.pth] [--host 0.0.0.0] [--share]
    # a stage-2 model, to ground phrases: its XTuner config + checkpoint, or its transformers LLaVA export
    python tools/web_demo.py \
        projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py \
        work_dirs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2/iter_1000.pth
    python tools/web_demo.py work_dirs/hf_llava

Safe by default: it listens on 127.0.0.1 only (``--host 0.0.0.0`` exposes it to the network), makes no public
share link unless ``--share``, refuses uploads over ``--max-file-size`` and images over ``--max-pixels``, and
serves no file outside ``<out-dir>/gradio``.
"""
import argparse
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from anywhere in a checkout

from granvit_mm.webui.server import (DEFAULT_DEMO_PIXELS, DEFAULT_HOST, DEFAULT_MAX_FILE_SIZE,  # noqa: E402
                                     prepare_environment)

DEFAULT_CONFIG = 'configs/granvit_pretrain_tiny.py'
DEFAULT_CHECKPOINT = 'work_dirs/granvit_pretrain_tiny'
DEFAULT_EXAMPLES = 'data/gran_synth/images/val'  # `make demo` writes GranSynth there


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG,
                        help=f'training config, stage 1 or an XTuner stage-2+ one ({DEFAULT_CONFIG}); '
                             'or a transformers LLaVA directory (xtuner_to_hf_llava.py output, no checkpoint '
                             'then)')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help=f'a .pth or a work dir: its best, else latest checkpoint ({DEFAULT_CHECKPOINT} '
                             'with the default config)')
    parser.add_argument('--stage', default='auto', choices=['auto', 'stage1', 'stage2', 'hf_llava'],
                        help='which kind of model (auto: from the config, or a LLaVA directory)')
    parser.add_argument('--llm-path', help="override the config's LLM path")
    parser.add_argument('--device', default='cpu', help='torch device')
    parser.add_argument('--host', default=DEFAULT_HOST,
                        help='address to listen on (default: this machine only)')
    parser.add_argument('--port', type=int, default=7860, help='port (0: a free one)')
    parser.add_argument('--share', action='store_true', help='also make a public gradio.live link (opt-in)')
    parser.add_argument('--max-file-size', default=DEFAULT_MAX_FILE_SIZE, help='largest upload, e.g. 10mb')
    parser.add_argument('--max-pixels', type=int, default=DEFAULT_DEMO_PIXELS, help='largest image in pixels')
    parser.add_argument('--compare',
                        help='a second checkpoint whose features are shown beside (e.g. SigLIP2)')
    parser.add_argument('--compare-config', help='config of --compare (not needed for converter output)')
    parser.add_argument('--compare-label', default='compare', help='caption of the second feature picture')
    parser.add_argument('--examples', default=DEFAULT_EXAMPLES,
                        help='a folder of images offered as examples, the first --num-examples '
                             f'({DEFAULT_EXAMPLES})')
    parser.add_argument('--num-examples', type=int, default=8, help='how many example images (0: none)')
    parser.add_argument('--out-dir', default='work_dirs/web_demo', help="the demo's own files (Gradio cache)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.config == DEFAULT_CONFIG:
        args.checkpoint = DEFAULT_CHECKPOINT
    return args


def example_images(folder: str, limit: int) -> list:
    """The first ``limit`` images of ``folder`` (none when it is missing)."""
    from granvit_mm.apis import list_images
    if limit <= 0 or not osp.isdir(folder):
        return []
    return list_images(folder)[:limit]


def build_backend(args):
    from granvit_mm.apis import DenseFeatureExtractor, GranViTInferencer
    from granvit_mm.webui import DemoBackend
    inferencer = GranViTInferencer(args.config, args.checkpoint, device=args.device, llm_path=args.llm_path,
                                   stage=args.stage, max_pixels=args.max_pixels)
    compare = None
    if args.compare:
        compare = (args.compare_label, DenseFeatureExtractor(args.compare, config=args.compare_config,
                                                             device=args.device, max_pixels=args.max_pixels))
    label = osp.basename(osp.dirname(inferencer.checkpoint)) or 'GranViT'
    return DemoBackend(inferencer, compare, label=label), inferencer.checkpoint


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    prepare_environment(args.out_dir)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SystemExit('[granvit] the web demo needs Gradio: pip install -r requirements/demo.txt')
    from granvit_mm.apis import InferenceInputError
    from granvit_mm.core.paths import MissingPathError
    from granvit_mm.webui import build_demo, launch_demo
    try:
        backend, checkpoint = build_backend(args)
    except (MissingPathError, InferenceInputError, ValueError, NotImplementedError) as e:
        raise SystemExit(f'[granvit] {e}')
    demo = build_demo(backend, note=f'Checkpoint: `{checkpoint}`',
                      examples=example_images(args.examples, args.num_examples))
    if args.host != DEFAULT_HOST:
        print(f'[granvit] listening on {args.host}: reachable from other machines')
    launch_demo(demo, host=args.host, port=args.port or None, share=args.share,
                max_file_size=args.max_file_size)


if __name__ == '__main__':
    main()
