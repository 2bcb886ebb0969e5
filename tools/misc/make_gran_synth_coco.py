"""Write GranSynth's object regions as COCO detection annotations (class = shape) beside the Gran JSONL.

    python tools/misc/make_gran_synth_coco.py --data-root data/gran_synth
    # -> data/gran_synth/annotations/{train,val}_coco_shape.json, read by
    #    projects/granvit_det/configs/retinanet_granvit-tiny_simplefpn_gransynth-64px.py
"""
import argparse
import os.path as osp

from granvit_mm.toy.gran_synth import ATTRIBUTE_VALUES
from granvit_mm.toy.gran_synth_coco import gran_synth_to_coco


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--class-attr', default='shape', choices=sorted(ATTRIBUTE_VALUES))
    args = p.parse_args(argv)
    for split in ('train', 'val'):
        out = osp.join(args.data_root, 'annotations', f'{split}_coco_{args.class_attr}.json')
        counts = gran_synth_to_coco(args.data_root, split, out, args.class_attr)
        print(f'{out}: {counts}')


if __name__ == '__main__':
    main()
