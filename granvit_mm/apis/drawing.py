"""Draw inference results (region captions, grounded phrases) on the image, in its own pixels."""
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ['draw_result']

REGION_COLOUR = (30, 144, 255)  # asked boxes: blue
GROUND_COLOUR = (255, 64, 0)  # grounded boxes: orange-red


def _label(draw: ImageDraw.ImageDraw, xy: Tuple[float, float], text: str, colour, font, width: int) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    y = max(0, y - (bottom - top) - 4)  # above the box when there is room
    x = max(0, min(x, width - (right - left) - 2))  # inside the picture when it fits
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
    draw.text((x, y), text, fill=(255, 255, 255), font=font)


def draw_result(image: np.ndarray, result: dict, max_label_chars: int = 48) -> np.ndarray:
    """RGB uint8 image + one inferencer result -> a copy with the boxes and their texts drawn."""
    canvas = Image.fromarray(np.ascontiguousarray(image)).convert('RGB')
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    width = max(1, round(side / 200))
    font = ImageFont.load_default(size=max(10, round(side / 40)))
    items = [(r['bbox'], r['caption'], REGION_COLOUR) for r in result.get('regions', [])]
    items += [(g['bbox'], g['phrase'], GROUND_COLOUR) for g in result.get('grounding', []) if g['bbox']]
    for box, text, colour in items:
        draw.rectangle(tuple(box), outline=colour, width=width)
        text = text if len(text) <= max_label_chars else text[:max_label_chars - 1] + '…'
        _label(draw, (box[0], box[1]), text or '(empty answer)', colour, font, canvas.width)
    return np.asarray(canvas)
