"""Generate GranSynth, the small synthetic Gran set (images + JSONL, train and val splits).

    python tools/misc/make_gran_synth.py --out-dir data/gran_synth [--num-train 2000 --num-val 200
        --image-size 128 --max-objects 3 --ocr-fraction 0.2 --seed 0 --shards 1] [--force]

A no-op when the folder already holds a set made with the same parameters.
"""
import argparse
import time
from dataclasses import fields

from granvit_mm.toy.gran_synth import SynthConfig, generate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out-dir', default='data/gran_synth')
    p.add_argument('--force', action='store_true', help='regenerate even if the parameters match')
    for f in fields(SynthConfig):
        p.add_argument('--' + f.name.replace('_', '-'), type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    kwargs = {f.name: getattr(args, f.name) for f in fields(SynthConfig)}
    t = time.perf_counter()
    meta = generate(args.out_dir, force=args.force, **kwargs)
    s = meta['stats']
    print(
        f"GranSynth in {args.out_dir}: train {s['train']['images']} images / "
        f"{s['train']['regions']} regions, "
        f"val {s['val']['images']} images / {s['val']['regions']} regions ({time.perf_counter() - t:.1f} s)")
    return meta


if __name__ == '__main__':
    main()
