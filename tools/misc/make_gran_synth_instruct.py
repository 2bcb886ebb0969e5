"""GranSynth as LLaVA-format instruction data for stage 3 on the toy (granvit_mm/toy/gran_synth_instruct.py).

    python tools/misc/make_gran_synth_instruct.py --data-root data/gran_synth \
        --out-dir data/gran_synth_instruct

Writes ``<out-dir>/train.json`` and ``val.json`` (LLaVA records: ``id``, ``image`` relative to
``<data-root>/images``, ``conversations``): global captions, Caption2Bbox, Bbox2Caption and attribute
questions.
"""
import argparse

from granvit_mm.toy.gran_synth_instruct import write_instructions


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--out-dir', default='data/gran_synth_instruct')
    p.add_argument('--max-turns', type=int, default=4, help='question/answer pairs per image at most')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    counts = write_instructions(args.data_root, args.out_dir, seed=args.seed, max_turns=args.max_turns)
    print(f'[make_gran_synth_instruct] {counts} LLaVA records in {args.out_dir} '
          f'(images in {args.data_root}/images)')
    return counts


if __name__ == '__main__':
    main()
