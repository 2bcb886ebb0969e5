"""What the web demo does, without Gradio: load an upload, caption a box, ground a phrase, show features.

Every action returns ``(outputs..., status)``; a bad input never raises: its :class:`InferenceInputError`
message becomes the status line, and an unexpected error is logged with its traceback and shown as one line,
so the server keeps serving. Not thread-safe by itself: the Gradio app runs every model action in one
concurrency group of size 1 (``app.MODEL_QUEUE``), its one serialisation.
"""
import logging
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from granvit_mm.apis import (GranViTInferencer, InferenceInputError, check_boxes, draw_result, feature_view,
                             parse_box_text, side_by_side)
from granvit_mm.apis.batch_inference import thumbnail

logger = logging.getLogger('granvit.webui')

OK = 'ok'


class DemoError(Exception):
    """A readable message for the status line."""


def readable(fn: Callable) -> Callable:
    """Run ``fn``; turn bad input into its message and anything else into a one-line internal error."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InferenceInputError, DemoError) as e:
            return None, f'Error: {e}'
        except Exception as e:  # a bug or a broken model: log it, keep serving
            logger.exception('web demo action %s failed', fn.__name__)
            return None, f'Internal error ({type(e).__name__}); the server log has the details.'

    wrapped.__name__ = fn.__name__
    return wrapped


class DemoBackend:
    """The demo's actions on one loaded model.

    Args:
        inferencer: a :class:`GranViTInferencer` (its ``max_pixels`` caps uploads' pixel counts).
        compare: optional ``(label, DenseFeatureExtractor)`` shown beside the model's features.
        label: caption of the model's feature picture.
        view_size: longer side of the feature pictures.
    """

    def __init__(self, inferencer: GranViTInferencer, compare: Optional[Tuple[str, object]] = None,
                 label: str = 'GranViT', view_size: int = 256):
        self.inferencer = inferencer
        self.compare = compare
        self.label = label
        self.view_size = view_size

    # ------------------------------------------------------------------------------------------ actions
    @readable
    def load(self, path: Optional[str]) -> Tuple[Optional[np.ndarray], str]:
        """An uploaded file -> the RGB image (refused: not an image, too many pixels)."""
        if not path:
            raise DemoError('no file uploaded')
        image = self.inferencer.load(path)
        return image, f'Loaded a {image.shape[1]}x{image.shape[0]} image. Click two corners or type a box.'

    @readable
    def caption(self, image: Optional[np.ndarray], box_text: str) -> Tuple[Optional[tuple], str]:
        """-> ((drawn image, answer text), status)."""
        image = self._need(image)
        box = parse_box_text(box_text or '')
        result = self.inferencer(image, boxes=[box])[0]
        region = result['regions'][0]
        return (draw_result(image, result), f'{_fmt(region["bbox"])}: {region["caption"]}'), OK

    @readable
    def global_caption(self, image: Optional[np.ndarray]) -> Tuple[Optional[str], str]:
        image = self._need(image)
        return self.inferencer(image, global_caption=True)[0]['caption'], OK

    @readable
    def ground(self, image: Optional[np.ndarray], phrase: str) -> Tuple[Optional[tuple], str]:
        """-> ((drawn image, answer text), status); an answer without a usable box says so."""
        image = self._need(image)
        result = self.inferencer(image, phrases=[phrase if phrase is not None else ''])[0]
        g = result['grounding'][0]
        if g['bbox'] is None:
            return (image, f'"{g["phrase"]}": no box in the answer {g["answer"]!r}'), OK
        return (draw_result(image, result), f'"{g["phrase"]}" -> {_fmt(g["bbox"])}'), OK

    @readable
    def features(self, image: Optional[np.ndarray]) -> Tuple[Optional[np.ndarray], str]:
        """Image | PCA of the model's dense features (| the comparison model's)."""
        image = self._need(image)
        panels, labels = [thumbnail(image, self.view_size)], ['image']
        feats = self.inferencer.feature_extractor.features([image])
        panels += feature_view(feats, self.view_size)
        labels.append(self.label)
        if self.compare is not None:
            panels += feature_view(self.compare[1].features([image]), self.view_size)
            labels.append(self.compare[0])
        return side_by_side(panels, labels), OK

    @readable
    def click(self, image: Optional[np.ndarray], corner: Optional[Sequence[float]],
              xy: Sequence[float]) -> Tuple[Optional[tuple], str]:
        """A click on the picture: the first sets a corner, the second closes the box.

        -> ((picture, new corner or None, box text or None), status)."""
        image = self._need(image)
        x, y = float(xy[0]), float(xy[1])
        if corner is None:
            return ((_mark(image, (x, y)), (x, y), None),
                    f'Corner at ({x:g}, {y:g}); click the opposite corner.')
        box = [min(corner[0], x), min(corner[1], y), max(corner[0], x), max(corner[1], y)]
        check_boxes(box, image.shape[1], image.shape[0])
        preview = draw_result(image, dict(regions=[dict(bbox=box, caption='box')]))
        return (preview, None, _fmt(box)[1:-1]), 'Box set; press "Caption box".'

    @staticmethod
    def _need(image: Optional[np.ndarray]) -> np.ndarray:
        if image is None:
            raise DemoError('upload an image first')
        return image


def _fmt(box: List[float]) -> str:
    return '[' + ', '.join(f'{v:g}' for v in box) + ']'


def _mark(image: np.ndarray, xy: Tuple[float, float]) -> np.ndarray:
    canvas = Image.fromarray(image).copy()
    r = max(2, round(max(canvas.size) / 100))
    ImageDraw.Draw(canvas).ellipse((xy[0] - r, xy[1] - r, xy[0] + r, xy[1] + r), fill=(255, 0, 128))
    return np.asarray(canvas)
