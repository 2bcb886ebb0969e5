"""Stage-2 data at Gran-29M scale: the lazy ``GranLLaVADataset`` vs XTuner's ``LLaVADataset`` (online and
offline).

One run, side by side, on the synthetic Gran JSONL of ``benchmark_dataset_index.py`` (``--lines``, 3M):

- lazy: ``GranLLaVADataset`` on the whole file: start-up (first open builds the offset index; later opens map
  it), random-access records/s of the text side (read + parse + validate + draw tasks + conversation +
  tokenise), peak memory;
- XTuner online: ``LLaVADataset(data_path=<LLaVA JSON>)``, which loads the JSON and tokenises it all in
  ``process_hf_dataset`` (XTuner's 32 processes) before training starts; measured on ``--xtuner-lines``
  subsets (the same records, written as LLaVA JSON with the conversation the lazy dataset draws at epoch 0)
  and extrapolated linearly (fit a + b * lines on the subsets);
- XTuner offline: the online result ``save_to_disk`` (what ``xtuner/tools/process_untokenized_llava_data.py``
  does) and ``LLaVADataset(offline_processed_text_folder=...)``: preparation time and disk, start-up, reads.

Each measurement runs in a fresh child process; memory is the peak proportional set size (PSS, shared pages
split between sharers) summed over the child and its worker processes, sampled every 0.2 s. Images are left
out on every path (the records point at no files): decoding costs the same whichever way the text is read.
The tokenizer is a byte-level BPE with Qwen2's split rule trained on the benchmark text (no Qwen tokenizer
offline); its tokens per record are printed.

    OMP_NUM_THREADS=1 flock /tmp/granvit_heavy.lock python tools/analysis_tools/benchmark_stage2_data.py \\
        --lines 3000000 --out stage2_data_3M.json
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark_dataset_index import GRAN_LINES, write_synthetic  # noqa: E402

# ---- measuring a child ----------------------------------------------------------------------------------


class PeakMemory:
    """Peak PSS (MB) of this process plus its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil
        self.proc, self.interval, self.peak = psutil.Process(), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        total = 0.0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                total += p.memory_full_info().pss / 2**20
            except Exception:  # noqa: BLE001 -- a worker that just exited
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _random_reads(n: int, read, seconds: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in rng.integers(0, n, size=64):
            read(int(i))
        count += 64
    return count / (time.perf_counter() - t0)


def _tokenizer(path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def child_lazy(args) -> dict:
    from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
    out = {}
    with PeakMemory() as mem:
        tok = _tokenizer(args.tokenizer)
        out['import_and_tokenizer_s'] = time.perf_counter() - T0
        for key in ('startup_first_s', 'startup_s'):  # first: builds the index; second: maps it
            t = time.perf_counter()
            ds = GranLLaVADataset(args.data, tok, image_size=512)
            ds.full_init()
            out[key] = time.perf_counter() - t
        out['records'] = len(ds)
        out['tokens_per_record'] = float(np.mean([len(ds.text_item(i)['input_ids']) for i in range(200)]))
        out['records_per_s'] = _random_reads(len(ds), ds.text_item, args.seconds)
        t = time.perf_counter()
        assert len(ds.modality_length) == len(ds)
        out['modality_length_s'] = time.perf_counter() - t
    out['peak_pss_mb'] = mem.peak
    return out


def _xtuner_dataset(args, tok, **kw):
    from xtuner.dataset import LLaVADataset
    from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE
    template_map_fn = dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.qwen_chat)
    return LLaVADataset(image_folder='', image_processor=None, tokenizer=tok, dataset_map_fn=llava_map_fn,
                        template_map_fn=template_map_fn, max_length=2048, **kw)


def child_xtuner_online(args) -> dict:
    out = {}
    with PeakMemory() as mem:
        tok = _tokenizer(args.tokenizer)
        t = time.perf_counter()
        ds = _xtuner_dataset(args, tok, data_path=args.data)
        out['startup_s'] = time.perf_counter() - t
        out['records'] = len(ds)
        out['records_per_s'] = _random_reads(len(ds), lambda i: ds.text_data[i], args.seconds)
        if args.save:
            t = time.perf_counter()
            ds.text_data.save_to_disk(args.save)
            out['save_s'] = time.perf_counter() - t
    out['peak_pss_mb'] = mem.peak
    return out


def child_xtuner_offline(args) -> dict:
    out = {}
    with PeakMemory() as mem:
        tok = _tokenizer(args.tokenizer)
        t = time.perf_counter()
        ds = _xtuner_dataset(args, tok, offline_processed_text_folder=args.data)
        out['startup_s'] = time.perf_counter() - t
        out['records'] = len(ds)
        out['records_per_s'] = _random_reads(len(ds), lambda i: ds.text_data[i], args.seconds)
        t = time.perf_counter()
        assert len(ds.modality_length) == len(ds)  # what LengthGroupedSampler reads: a pass over all rows
        out['modality_length_s'] = time.perf_counter() - t
    out['peak_pss_mb'] = mem.peak
    out['disk_bytes'] = sum(osp.getsize(osp.join(d, f)) for d, _, fs in os.walk(args.data) for f in fs)
    return out


def image_reference(tmp: str, seconds: float, size: int = 512) -> dict:
    """What the image side of an item costs, for scale: a 1024x768 JPEG photo-like image read with
    ``LoadGranImage`` (Pillow decode, EXIF, size check) and made a ``size`` px model input."""
    from PIL import Image

    from granvit_mm.core.image_input import to_model_input
    from granvit_mm.datasets.transforms import LoadGranImage
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:768, 0:1024]
    img = np.stack([(xx // 4 + yy // 3) % 256, (xx // 2) % 256, (yy // 2) % 256], -1).astype(np.float32)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    path = osp.join(tmp, 'photo.jpg')
    Image.fromarray(img).save(path, quality=90)
    load = LoadGranImage()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        res = load(dict(img_path=path, width=1024, height=768, shard='-', line=0))
        to_model_input(res['img'], size)
        n += 1
    return dict(jpeg_bytes=osp.getsize(path), images_per_s=n / (time.perf_counter() - t0))


CHILDREN = dict(lazy=child_lazy, xtuner_online=child_xtuner_online, xtuner_offline=child_xtuner_offline)


def run_child(kind: str, data: str, args, save: str = '') -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--child', kind, '--data', data, '--tokenizer',
           args.tokenizer, '--seconds', str(args.seconds)] + (['--save', save] if save else [])
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f'{kind} failed:\n{proc.stderr[-4000:]}')
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res['process_wall_s'] = time.perf_counter() - t
    print(f'{kind} on {data}: {json.dumps(res)}', flush=True)
    return res


# ---- the parent -----------------------------------------------------------------------------------------
def make_tokenizer(path: str, jsonl: str, vocab_size: int) -> None:
    """Byte-level BPE (Qwen2's split rule) trained on the benchmark's conversations."""
    from granvit_mm.toy.tiny_llm import region_chat_corpus, train_tokenizer
    with open(jsonl) as f:
        records = [json.loads(next(f)) for _ in range(2000)]
    train_tokenizer(region_chat_corpus(records), vocab_size).save_pretrained(path)


def write_llava_json(jsonl: str, out: str, lines: int, tokenizer: str) -> float:
    """The first ``lines`` records as XTuner LLaVA JSON, with the conversations the lazy dataset draws."""
    from granvit_mm.xtuner.gran_conversation import llava_conversation
    from granvit_mm.xtuner.gran_llava_dataset import GranLLaVADataset
    t = time.perf_counter()
    ds = GranLLaVADataset(jsonl, _tokenizer(tokenizer), image_size=512)
    items = []
    for i in range(lines):
        res = ds.sample_tasks(ds.get_data_info(i))
        items.append(dict(id=str(i), image=res['img_path'],
                          conversations=llava_conversation(ds.to_llava.tasks(res))))
    with open(out, 'w') as f:
        json.dump(items, f)
    return time.perf_counter() - t


def fit_line(xs, ys):
    """(a, b) of y = a + b x (least squares; two points: the line through them)."""
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def extrapolate(res: dict, lines: int) -> dict:
    subs = res['xtuner_subsets']
    ns = [s['lines'] for s in subs]

    def at(key, kind):
        a, b = fit_line(ns, [s[kind][key] for s in subs])
        return a + b * lines

    lazy = res['lazy']
    return dict(
        lines=lines,
        lazy=dict(startup_first_s=lazy['startup_first_s'] * lines / res['lines'], startup_s=lazy['startup_s'],
                  peak_pss_mb=lazy['peak_pss_mb'], records_per_s=lazy['records_per_s'],
                  modality_length_s=lazy['modality_length_s'] * lines / res['lines']),
        xtuner_online=dict(startup_s=at('startup_s', 'online'), peak_pss_mb=at('peak_pss_mb', 'online'),
                           records_per_s=subs[-1]['online']['records_per_s']),
        xtuner_offline=dict(prepare_s=at('startup_s', 'online') + at('save_s', 'online'),
                            prepare_peak_pss_mb=at('peak_pss_mb', 'online'),
                            disk_gb=at('disk_bytes', 'offline') / 1e9, startup_s=at('startup_s', 'offline'),
                            peak_pss_mb=at('peak_pss_mb', 'offline'),
                            modality_length_s=at('modality_length_s', 'offline'),
                            records_per_s=subs[-1]['offline']['records_per_s']),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--lines', type=int, default=3_000_000, help='lines of the synthetic Gran JSONL')
    p.add_argument('--xtuner-lines', type=int, nargs='+', default=[10_000, 40_000],
                   help="subset sizes for XTuner's LLaVADataset (extrapolated to --lines and 29.5M)")
    p.add_argument('--seconds', type=float, default=10.0, help='random-read time per measurement')
    p.add_argument('--vocab-size', type=int, default=4096)
    p.add_argument('--tmp-dir', default=None)
    p.add_argument('--keep', action='store_true')
    p.add_argument('--out', default=None, help='write the figures as JSON here')
    p.add_argument('--child', choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--tokenizer', default=None, help=argparse.SUPPRESS)
    p.add_argument('--save', default='', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    tmp = tempfile.mkdtemp(prefix='granvit_stage2_bench_', dir=args.tmp_dir)
    res = dict(lines=args.lines, cpu_count=os.cpu_count())
    try:
        jsonl = osp.join(tmp, 'bench.jsonl')
        t = time.perf_counter()
        res['jsonl_bytes'] = write_synthetic(jsonl, args.lines)
        print(f'wrote {args.lines} lines ({res["jsonl_bytes"] / 1e9:.2f} GB) in '
              f'{time.perf_counter() - t:.0f} s', flush=True)
        args.tokenizer = osp.join(tmp, 'tokenizer')
        make_tokenizer(args.tokenizer, jsonl, args.vocab_size)
        res['lazy'] = run_child('lazy', jsonl, args)
        res['image_reference'] = image_reference(tmp, args.seconds)
        print(f'image side: {json.dumps(res["image_reference"])}', flush=True)
        res['xtuner_subsets'] = []
        for n in args.xtuner_lines:
            llava = osp.join(tmp, f'llava_{n}.json')
            sub = dict(lines=n, write_llava_json_s=write_llava_json(jsonl, llava, n, args.tokenizer))
            arrow = osp.join(tmp, f'offline_{n}')
            sub['online'] = run_child('xtuner_online', llava, args, save=arrow)
            sub['offline'] = run_child('xtuner_offline', arrow, args)
            res['xtuner_subsets'].append(sub)
        res[f'extrapolated_{args.lines}'] = extrapolate(res, args.lines)
        res['extrapolated_29.5M'] = extrapolate(res, GRAN_LINES)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


T0 = time.perf_counter()
if __name__ == '__main__':
    main()
