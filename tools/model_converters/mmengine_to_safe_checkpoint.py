"""Convert a checkpoint written by plain MMEngine (without granvit.WeightsOnlyCheckpointHook) into one that
torch's safe loader (``weights_only=True``) reads, so ``--resume`` / ``load_from`` work with safe loading on.

    python tools/model_converters/mmengine_to_safe_checkpoint.py work_dirs/x/iter_2000.pth safe_iter_2000.pth

Plain MMEngine 0.10 pickles its ``message_hub`` (``HistoryBuffer`` objects, numpy arrays and scalars) into the
checkpoint. Loading that needs more than tensors, and ``weights_only=False`` would run any code a crafted file
carries. So the input is read with torch's safe unpickler widened by a fixed ALLOW-LIST of exactly what
MMEngine writes: numpy array / dtype / scalar reconstruction, ``HistoryBuffer``, and ``getattr`` restricted to
``HistoryBuffer``'s statistics methods (``getattr(HistoryBuffer, 'mean')`` is how pickle stores them; a
general ``getattr`` would let a file reach arbitrary attributes). Anything else makes the load fail with the
name of the global it wanted. ``--trust`` (full pickle, can execute code) exists only for files whose origin
you trust and that hold more than MMEngine writes; it is never the default. The output holds only tensors and
plain Python values, and is checked by re-loading it with ``weights_only=True``.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from granvit_mm.core.checkpoint_reader import read_checkpoint
from granvit_mm.engine.hooks.weights_only_checkpoint import to_weights_only


def _history_buffer_getattr(obj, name):
    """The only ``getattr`` an MMEngine checkpoint needs: a statistics method of ``HistoryBuffer`` (its
    ``_statistics_methods`` registry holds ``HistoryBuffer.min`` etc., pickled as
    ``getattr(HistoryBuffer, 'min')``)."""
    # the registry is filled on first use
    methods = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and name in methods:
        return getattr(obj, name)
    raise ValueError(f'refusing getattr({obj!r}, {name!r}) while loading an untrusted checkpoint')


def _numpy_globals():
    core = np._core if hasattr(np, '_core') else np.core
    recon, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in '?bBhHiIlLqQefdgFDG'] + [type(np.dtype('U')), type(np.dtype('S')),
                                                                  type(np.dtype('O'))]
    out = [np.ndarray, np.dtype, recon, scalar] + dtypes
    # names as numpy 1.x wrote them (numpy.core.*), so files from either major version load
    out += [(recon, 'numpy.core.multiarray._reconstruct'), (scalar, 'numpy.core.multiarray.scalar')]
    return out


def allowed_globals():
    return _numpy_globals() + [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
                               (_history_buffer_getattr, '__builtin__.getattr')]


def load_untrusted(path: str) -> dict:
    """``torch.load`` with ``weights_only=True`` and the allow-list above."""
    with torch.serialization.safe_globals(allowed_globals()):
        return torch.load(path, map_location='cpu', weights_only=True)


def convert(src: str, dst: str, trust: bool = False) -> dict:
    if trust:
        print(f'[granvit] --trust: {src} is unpickled in full (it could run code); only for files you trust',
              file=sys.stderr)
        ckpt = read_checkpoint(src, trusted=True)
    else:
        try:
            ckpt = load_untrusted(src)
        except Exception as err:  # noqa: BLE001 -- re-raised with what to do
            raise SystemExit(f'[granvit] {src} holds more than a plain MMEngine checkpoint, so the safe '
                             f'loader refused it:\n  {err}\nIf you trust where the file comes from, re-run '
                             'with --trust.') from None
    if not isinstance(ckpt, dict):
        raise SystemExit(f'[granvit] {src}: expected a checkpoint dict, got {type(ckpt).__name__}')
    safe = to_weights_only(ckpt)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(safe, tmp)
    torch.load(tmp, map_location='cpu', weights_only=True)  # the point of the exercise
    os.replace(tmp, dst)
    return safe


def main(argv=None):
    parser = argparse.ArgumentParser(description='Plain MMEngine checkpoint -> weights_only-safe checkpoint')
    parser.add_argument('src', help='checkpoint written by plain MMEngine')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--trust', '--trust-checkpoint', dest='trust', action='store_true',
                        help='unpickle the input in full (can run code in it): only for trusted files that '
                        'the allow-list refuses')
    args = parser.parse_args(argv)
    safe = convert(args.src, args.dst, args.trust)
    n = len(safe.get('state_dict', {}))
    print(f'{args.dst}: {n} weights, keys {sorted(safe)}; loads with torch.load(weights_only=True); '
          'resume with `tools/train.py CONFIG --resume ' + args.dst + '`')


if __name__ == '__main__':
    main()
