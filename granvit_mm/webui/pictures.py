"""Pictures the demo shows, each written once to a path of its own inside Gradio's cache folder.

Gradio saves a returned array under a name made from a hash of its pixels and rewrites that file on every
request that returns the same picture; sessions that upload the same image and caption the same box get the
same picture, so one request's file was being rewritten while the server streamed it to another browser
(starlette: "Too little data for declared Content-Length"). A file named by a fresh UUID, written to a
temporary name and renamed into place, is never touched again by any request, so every response is served
whole. Files in the cache folder are served as they are (Gradio copies only files outside it) and are deleted
by the app's ``delete_cache`` like Gradio's own.
"""
import os
import os.path as osp
import tempfile
import uuid

import numpy as np
from PIL import Image

__all__ = ['PICTURE_SUBDIR', 'write_picture']

PICTURE_SUBDIR = 'granvit_pictures'


def write_picture(image: np.ndarray, cache_dir: str) -> str:
    """RGB uint8 array -> path of a new PNG under ``cache_dir/granvit_pictures`` that no other call writes."""
    folder = osp.join(cache_dir, PICTURE_SUBDIR)
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{uuid.uuid4().hex}.png')
    fd, tmp = tempfile.mkstemp(suffix='.png.part', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            Image.fromarray(np.ascontiguousarray(image)).save(f, format='PNG')
        os.replace(tmp, path)  # the whole file appears at once, under a name no one else uses
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return path
