"""GranSynth: a small, seeded, compositional stand-in for Gran-29M that a tiny model can learn on CPU.

Two kinds of image, written as Gran JSONL with train and held-out val splits:
- scenes: a few shapes on a light, noisy background; each shape has a colour (6), shape (5), size (3) and
  texture (2), and its region caption names all four ("a large red striped circle"), so a caption is right
  only if the model looked at that region. Some objects share all but one attribute with another object in
  the image (``hard_negative_prob``), so that attending to the image globally is not enough. The global
  caption lists the objects with their coarse positions.
- OCR-like pages: lines of 1-2 words from a small vocabulary, rendered with Pillow's bundled scalable font
  (``ImageFont.load_default(size=...)``, Pillow >= 10.1) at several sizes; region caption = the text; no
  global caption (like the OCR part of Gran-29M).

Sizes are fractions of the image's longer side, which becomes the model input side after pad-to-square, so
at a 64 px input with patch 8 the smallest object spans about two patches.

Each image is drawn from its own generator seeded by (seed, split, index): the output does not depend on
the order or on the number of images generated before it.
"""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from granvit_mm.core.gran_record import dump_record, make_record

GENERATOR_VERSION = 1
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 40, 40),
    'green': (40, 160, 60),
    'blue': (40, 80, 215),
    'yellow': (235, 200, 30),
    'purple': (140, 60, 185),
    'orange': (240, 130, 30)
}
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross')
SIZES: Dict[str, float] = {'small': 0.22, 'medium': 0.32, 'large': 0.45}  # fraction of the longer side
TEXTURES = ('solid', 'striped')
WORDS = ('open', 'stop', 'exit', 'sale', 'menu', 'cafe', 'park', 'taxi', 'hotel', 'bank', 'bus', 'shop')
TEXT_COLOURS = ((20, 20, 20), (20, 30, 110), (120, 20, 20))
FONT_SIZES = (0.14, 0.19, 0.25)  # fraction of the longer side
ATTRIBUTES = ('size', 'colour', 'texture', 'shape')  # the words of an object caption, in order
ATTRIBUTE_VALUES: Dict[str, Tuple[str, ...]] = dict(
    size=tuple(SIZES), colour=tuple(COLOURS), texture=TEXTURES, shape=SHAPES)
SPLITS = {'train': 0, 'val': 1}


@dataclass
class SynthConfig:
    """Everything that decides the output; two configs that compare equal produce identical files."""
    num_train: int = 2000
    num_val: int = 200
    image_size: int = 128  # longer side, px
    min_aspect: float = 0.75  # shorter / longer side, drawn uniformly in [min_aspect, 1]
    min_objects: int = 1
    max_objects: int = 3
    ocr_fraction: float = 0.2
    hard_negative_prob: float = 0.5
    shards: int = 1
    seed: int = 0
    image_format: str = 'png'


def object_caption(size: str, colour: str, texture: str, shape: str) -> str:
    return f'a {size} {colour} {texture} {shape}'


def object_attributes(caption: str) -> Optional[Dict[str, str]]:
    """The attributes an object caption names (the inverse of ``object_caption``), or None for other text."""
    words = caption.split()
    if len(words) != 5 or words[0] != 'a':
        return None
    attrs = dict(zip(ATTRIBUTES, words[1:]))
    return attrs if all(attrs[k] in ATTRIBUTE_VALUES[k] for k in ATTRIBUTES) else None


def object_regions(record: dict) -> List[Tuple[List[float], Dict[str, str]]]:
    """(bbox, attributes) of a record's object regions (OCR text regions left out): the labels of the region
    probe and of the GranSynth detection set."""
    objects = [(r['bbox'], object_attributes(r['caption'])) for r in record['regions']]
    return [(box, attrs) for box, attrs in objects if attrs is not None]


def _position_words(box: List[float], w: int, h: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    vert = 'top' if cy < 1 / 3 else 'bottom' if cy > 2 / 3 else 'middle'
    horiz = 'left' if cx < 1 / 3 else 'right' if cx > 2 / 3 else 'center'
    return 'the center' if (vert, horiz) == ('middle', 'center') else f'the {vert} {horiz}'


def _image_size(cfg: SynthConfig, rng: np.random.Generator) -> Tuple[int, int]:
    long_side = cfg.image_size
    short = int(round(long_side * rng.uniform(cfg.min_aspect, 1.0)))
    return (long_side, short) if rng.random() < 0.5 else (short, long_side)


def _background(w: int, h: int, rng: np.random.Generator, base_lo: int = 195) -> np.ndarray:
    base = rng.integers(base_lo, 250, size=3)
    noise = rng.integers(-8, 9, size=(h, w, 1))
    return (base[None, None, :] + noise).clip(0, 255).astype(np.uint8)


def _shape_mask(shape: str, s: int) -> Image.Image:
    mask = Image.new('L', (s, s), 0)
    d = ImageDraw.Draw(mask)
    e = s - 1
    if shape == 'circle':
        d.ellipse([0, 0, e, e], fill=255)
    elif shape == 'square':
        d.rectangle([0, 0, e, e], fill=255)
    elif shape == 'triangle':
        d.polygon([(e / 2, 0), (0, e), (e, e)], fill=255)
    elif shape == 'diamond':
        d.polygon([(e / 2, 0), (e, e / 2), (e / 2, e), (0, e / 2)], fill=255)
    elif shape == 'cross':
        a, b = round(s / 3), round(2 * s / 3) - 1
        d.rectangle([a, 0, b, e], fill=255)
        d.rectangle([0, a, e, b], fill=255)
    else:
        raise ValueError(shape)
    return mask


def _shape_patch(colour: Tuple[int, int, int], texture: str, s: int) -> Image.Image:
    patch = np.empty((s, s, 3), np.uint8)
    patch[...] = colour
    if texture == 'striped':  # about five light horizontal bands, visible at a 64 px input
        band = max(2, s // 10)
        light = ((np.arange(s) // band) % 2 == 1)
        patch[light] = (0.35 * np.array(colour) + 0.65 * 255).astype(np.uint8)
    return Image.fromarray(patch)


def _draw_attrs(rng: np.random.Generator, prev: List[tuple], hard_prob: float) -> tuple:
    if prev and rng.random() < hard_prob:  # copy a previous object but change one attribute
        attrs = list(prev[int(rng.integers(len(prev)))])
        pools = (list(SIZES), list(COLOURS), list(TEXTURES), list(SHAPES))
        k = int(rng.integers(4))
        attrs[k] = pools[k][int(rng.integers(len(pools[k])))]
        return tuple(attrs)
    return (list(SIZES)[int(rng.integers(3))], list(COLOURS)[int(rng.integers(6))],
            TEXTURES[int(rng.integers(2))], SHAPES[int(rng.integers(5))])


def _overlaps(box: List[float], boxes: List[List[float]], gap: int = 2) -> bool:
    return any(box[0] < b[2] + gap and b[0] < box[2] + gap and box[1] < b[3] + gap and b[1] < box[3] + gap
               for b in boxes)


def make_scene(cfg: SynthConfig, rng: np.random.Generator) -> Tuple[Image.Image, List[dict], str]:
    """A scene image, its object regions, and its global caption."""
    w, h = _image_size(cfg, rng)
    img = Image.fromarray(_background(w, h, rng))
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    regions, used, boxes = [], [], []
    for _ in range(n * 10):  # attempts
        if len(regions) == n:
            break
        attrs = _draw_attrs(rng, used, cfg.hard_negative_prob)
        if attrs in used:
            continue
        size, colour, texture, shape = attrs
        s = int(round(SIZES[size] * max(w, h) * rng.uniform(0.94, 1.06)))
        if s >= min(w, h):
            continue
        x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        box = [x, y, x + s, y + s]
        if _overlaps(box, boxes):
            continue
        img.paste(_shape_patch(COLOURS[colour], texture, s), (x, y), _shape_mask(shape, s))
        used.append(attrs)
        boxes.append(box)
        regions.append(dict(bbox=box, caption=object_caption(*attrs), kind='object'))
    parts = [f"{r['caption']} at {_position_words(r['bbox'], w, h)}" for r in regions]
    noun = 'shape' if len(parts) == 1 else 'shapes'
    caption = f'an image of {len(parts)} {noun} on a plain background: ' + ', '.join(parts) + '.'
    return img, regions, caption


def make_page(cfg: SynthConfig, rng: np.random.Generator) -> Tuple[Image.Image, List[dict], None]:
    """An OCR-like page: lines of one or two words; each line is a ``text`` region."""
    w, h = _image_size(cfg, rng)
    img = Image.fromarray(_background(w, h, rng, base_lo=235))
    d = ImageDraw.Draw(img)
    regions, y = [], int(rng.integers(1, 6))
    order = [WORDS[int(i)] for i in rng.permutation(len(WORDS))]  # no word twice on a page: unique captions
    for k in range(4):
        size = max(8, int(round(FONT_SIZES[int(rng.integers(len(FONT_SIZES)))] * max(w, h))))
        font = ImageFont.load_default(size=size)
        words = order[2 * k:2 * k + int(rng.integers(1, 3))]
        text = ' '.join(words)
        x1, y1, x2, y2 = d.textbbox((0, 0), text, font=font)
        if x2 - x1 > w - 4:
            text = words[0]
            x1, y1, x2, y2 = d.textbbox((0, 0), text, font=font)
        if x2 - x1 > w - 4 or y + (y2 - y1) + 2 > h:
            break
        x = int(rng.integers(2, w - (x2 - x1) - 1))
        d.text((x - x1, y - y1), text, font=font, fill=TEXT_COLOURS[int(rng.integers(len(TEXT_COLOURS)))])
        box = [max(0, x - 1), max(0, y - 1), min(w, x + (x2 - x1) + 1), min(h, y + (y2 - y1) + 1)]
        regions.append(dict(bbox=box, caption=text, kind='text'))
        y += (y2 - y1) + int(rng.integers(3, 3 + size // 2))
    return img, regions, None


def make_image(cfg: SynthConfig, split: str, index: int) -> Tuple[Image.Image, dict]:
    """Image ``index`` of ``split`` and its Gran record (image path relative to ``images/``)."""
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    is_page = rng.random() < cfg.ocr_fraction
    img, regions, caption = (make_page if is_page else make_scene)(cfg, rng)
    if not regions:  # a page too small for any line, practically never: fall back to a scene
        img, regions, caption = make_scene(cfg, rng)
        is_page = False
    rel = f'{split}/{index:06d}.{cfg.image_format}'
    rec = make_record(rel, img.width, img.height, regions, caption,
                      'gran_synth_ocr' if is_page else 'gran_synth')
    return img, rec


def _shard_names(split: str, shards: int) -> List[str]:
    if shards <= 1:
        return [f'{split}.jsonl']
    return [f'{split}-{i:05d}-of-{shards:05d}.jsonl' for i in range(shards)]


def _write_split(cfg: SynthConfig, out_dir: str, split: str, num: int) -> Dict[str, int]:
    os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
    names = _shard_names(split, cfg.shards)
    files = [open(osp.join(out_dir, 'annotations', n), 'w', encoding='utf-8') for n in names]
    stats = dict(images=0, regions=0, ocr_images=0)
    try:
        for i in range(num):
            img, rec = make_image(cfg, split, i)
            img.save(osp.join(out_dir, 'images', rec['image']))
            files[i * len(files) // max(num, 1)].write(dump_record(rec) + '\n')
            stats['images'] += 1
            stats['regions'] += len(rec['regions'])
            stats['ocr_images'] += rec['source'] == 'gran_synth_ocr'
    finally:
        for f in files:
            f.close()
    return stats


def _meta_matches(out_dir: str, params: dict) -> bool:
    path = osp.join(out_dir, 'meta.json')
    if not osp.isfile(path):
        return False
    with open(path, encoding='utf-8') as f:
        meta = json.load(f)
    if meta.get('params') != params or meta.get('generator_version') != GENERATOR_VERSION:
        return False
    return all(
        osp.isfile(osp.join(out_dir, 'annotations', n)) for split in SPLITS
        for n in _shard_names(split, params['shards']))


def generate(out_dir: str, force: bool = False, **kwargs) -> dict:
    """Write GranSynth to ``out_dir`` (``images/``, ``annotations/{train,val}.jsonl``, ``meta.json``).

    A no-op returning the existing meta when ``out_dir`` already holds the same parameters (``force``
    regenerates). Keyword arguments are ``SynthConfig`` fields.
    """
    cfg = SynthConfig(**kwargs)
    params = asdict(cfg)
    if not force and _meta_matches(out_dir, params):
        with open(osp.join(out_dir, 'meta.json'), encoding='utf-8') as f:
            return json.load(f)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    if osp.exists(osp.join(out_dir, 'meta.json')):
        os.remove(osp.join(out_dir, 'meta.json'))  # a half-written set must not look complete
    stats = {
        split: _write_split(cfg, out_dir, split, num)
        for split, num in (('train', cfg.num_train), ('val', cfg.num_val))
    }
    meta = dict(
        generator_version=GENERATOR_VERSION,
        params=params,
        stats=stats,
        annotations={s: [f'annotations/{n}' for n in _shard_names(s, cfg.shards)]
                     for s in SPLITS},
        vocabulary=dict(
            colours=list(COLOURS),
            shapes=list(SHAPES),
            sizes=list(SIZES),
            textures=list(TEXTURES),
            words=list(WORDS)),
        img_prefix='images/')
    with open(osp.join(out_dir, 'meta.json'), 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2)
    return meta


def load_meta(out_dir: str) -> Optional[dict]:
    path = osp.join(out_dir, 'meta.json')
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)
