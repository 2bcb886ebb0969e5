"""The paper's chain at toy scale, one command: start encoder -> stage 1 (with / without distillation) ->
region probe, detection and stage 2 from every encoder, over several seeds; writes a table and a plot.

    make tiny-llm    # GranSynth, the tiny SigLIP and the demo's tiny LLM (what `make demo` trains with)
    python tools/analysis_tools/toy_chain.py --work-dir work_dirs/toy_chain --seeds 0 1 2
    # -> work_dirs/toy_chain/{results.json, table.md, curves.png}; docs/toy_chain.md records a run

Every step runs a stock tool in a subprocess (the commands a user would type; each is printed) and is skipped
when its output exists, so an interrupted chain resumes where it stopped. The start encoder is one asset, like
SigLIP2 in the paper: the tiny SigLIP of ``make tiny-siglip`` (converted like a real SigLIP2). Per seed s:

1. random init drawn with seed s (the tiny config's own init);
2. stage 1 from the tiny SigLIP, with and without self-distillation (``tools/train.py
   configs/granvit_pretrain_tiny.py``, ``randomness.seed=s``);
3. the frozen-encoder region probe of random init, SigLIP and both stage-1 students (``region_probe.py``), and
   the sub-patch probe of the same encoders (``spatial_probe.py``: how much pixel and box-edge detail the
   tokens keep, the measurement behind the detection result);
4. RetinaNet on GranSynth's objects from each encoder through mmdet's packaged ``train.py`` (bbox mAP);
5. stage 2 (``--stage2-seeds``, all three by default): XTuner trains projector + LLM on the frozen encoder,
   ``eval_stage2.py`` scores Caption2Bbox Acc@0.5.

Numbers are means and spreads (max - min) over the seeds; a difference smaller than the spreads is not shown.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable
STAGE1_CFG = 'configs/granvit_pretrain_tiny.py'
DET_CFG = 'projects/granvit_det/configs/retinanet_granvit-tiny_simplefpn_gransynth-64px.py'
STAGE2_CFG = 'projects/granvit_xtuner/configs/granvit_tiny_qwen2_tiny_full_gransynth_cpu_stage2.py'
# table order: each should beat the one before
ENCODERS = ('random', 'siglip', 'granvit_nodistill', 'granvit')


def run(cmd, log, env=None):
    """Run one stock tool; its output goes to ``log``; a failure stops the chain with the log's tail."""
    print('$ ' + ' '.join(cmd), flush=True)
    t0 = time.time()
    os.makedirs(osp.dirname(log), exist_ok=True)
    with open(log, 'w') as f:
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                               env=dict(os.environ, **(env or {})))
    if code != 0:
        tail = open(log, errors='replace').read()[-3000:]
        sys.exit(f'[toy_chain] step failed (exit {code}); log {log}:\n{tail}')
    print(f'  done in {time.time() - t0:.0f} s', flush=True)


def scalars(work_dir):
    """MMEngine's logged scalars of the latest run in ``work_dir`` (one dict per logged step)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        return []
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def stage1(args, seed, siglip_ckpt, distill):
    name = 'granvit' if distill else 'granvit_nodistill'
    wd = osp.join(args.work_dir, f'seed{seed}', name)
    ckpt = osp.join(wd, f'iter_{args.stage1_iters}.pth')
    if not osp.isfile(ckpt):
        opts = [f'randomness.seed={seed}', f'model.head.llm_path={args.llm_path}',
                f'train_cfg.max_iters={args.stage1_iters}',
                'model.backbone.init_cfg.type=Pretrained',
                f'model.backbone.init_cfg.checkpoint={siglip_ckpt}']
        if not distill:
            opts.append('model.distill_loss=None')
        run([PY, 'tools/train.py', STAGE1_CFG, '--work-dir', wd, '--cfg-options'] + opts, wd + '.log',
            env=dict(OMP_NUM_THREADS=str(args.threads)))
    return ckpt, stage1_curves(scalars(wd))


def stage1_curves(rows):
    """{'rouge_l': [(iteration, val ROUGE-L)], 'loss_caption': [...], 'mse_distill': [...]} from the scalars
    (a val row carries no iteration of its own: it belongs to the training iteration logged before it)."""
    curves, it = dict(rouge_l=[], loss_caption=[], mse_distill=[]), 0
    for row in rows:
        if 'bbox2caption/rouge_l' in row:
            curves['rouge_l'].append((it, row['bbox2caption/rouge_l']))
            continue
        it = row.get('iter', row.get('step', it))
        for key in ('loss_caption', 'mse_distill'):
            if key in row:
                curves[key].append((it, row[key]))
    return curves


def frozen_probe(args, seed, tool, out_name, encoders):
    """Run a frozen-encoder probe tool (region_probe.py, spatial_probe.py) on random init and ``encoders``
    ({name: CKPT[:PREFIX]}); returns its JSON ({encoder: {measure: value}})."""
    out = osp.join(args.work_dir, f'seed{seed}', out_name)
    if not osp.isfile(out):
        cmd = [PY, f'tools/analysis_tools/{tool}', '--data-root', args.data_root, '--seed', str(seed),
               '--out', out, '--encoder', 'random']
        for name, spec in encoders.items():
            cmd += ['--encoder', f'{name}={spec}']
        run(cmd, out + '.log', env=dict(OMP_NUM_THREADS=str(args.threads)))
    with open(out) as f:
        return json.load(f)


def detection(args, seed, name, ckpt):
    wd = osp.join(args.work_dir, f'seed{seed}', f'det_{name}')
    if not osp.isfile(osp.join(wd, f'iter_{args.det_iters}.pth')):
        tools = osp.join(osp.dirname(__import__('mmdet').__file__), '.mim', 'tools')
        init = ['model.backbone.init_cfg=None'] if ckpt is None else [
            f'model.backbone.init_cfg.checkpoint={ckpt}',
            f'model.backbone.init_cfg.prefix={None if name == "siglip" else "backbone."}']
        root = args.data_root.rstrip('/') + '/'
        opts = [f'randomness.seed={seed}', f'train_cfg.max_iters={args.det_iters}',
                f'train_cfg.val_interval={args.det_iters}',
                f'default_hooks.checkpoint.interval={args.det_iters}',
                f'param_scheduler.1.end={args.det_iters}',
                f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
                f'test_dataloader.dataset.data_root={root}',
                f'val_evaluator.ann_file={root}annotations/val_coco_shape.json',
                f'test_evaluator.ann_file={root}annotations/val_coco_shape.json'] + init
        run([PY, osp.join(tools, 'train.py'), DET_CFG, '--work-dir', wd, '--cfg-options'] + opts, wd + '.log',
            env=dict(OMP_NUM_THREADS=str(args.threads)))
    maps = [s['coco/bbox_mAP'] for s in scalars(wd) if 'coco/bbox_mAP' in s]
    return 100 * maps[-1]


def stage2(args, seed, name, ckpt):
    """XTuner stage 2 on the frozen encoder; the stage-1 projector comes along where there is one."""
    base = osp.join(args.work_dir, f'seed{seed}', f'stage2_{name}')
    out = base + '.json'
    if not osp.isfile(out):
        hf = base + '_encoder'
        if name == 'siglip':  # a SigLIP directory is already what stage 2 reads (like a real SigLIP2)
            hf = osp.dirname(ckpt)
        elif not osp.isdir(hf):
            run([PY, 'tools/model_converters/granvit_to_hf.py', ckpt, hf], hf + '.log')
        projector = osp.join(hf, 'projector')
        wd = base + '_xtuner'
        opts = [f'model.visual_encoder.pretrained_model_name_or_path={hf}',
                f'model.projector_path={projector if osp.isdir(projector) else None}',
                f'model.llm.pretrained_model_name_or_path={args.llm_path}',
                f'tokenizer.pretrained_model_name_or_path={args.llm_path}',
                f'train_cfg.max_iters={args.stage2_iters}', f'randomness.seed={seed}']
        run([PY, '-m', 'xtuner.tools.train', STAGE2_CFG, '--work-dir', wd, '--cfg-options'] + opts,
            wd + '.log', env=dict(OMP_NUM_THREADS=str(args.threads)))
        final = osp.join(wd, f'iter_{args.stage2_iters}.pth')
        if not osp.exists(final):  # `xtuner train` exits 0 when training crashes (docs/install.md)
            sys.exit(f'[toy_chain] stage 2 left no {final}; see {wd}.log')
        run([PY, 'tools/analysis_tools/eval_stage2.py', STAGE2_CFG, final, '--tasks', 'caption2bbox',
             '--out', out, '--cfg-options'] + opts,
            base + '.eval.log', env=dict(OMP_NUM_THREADS=str(args.threads)))
    with open(out) as f:
        m = json.load(f)
    return m


def spread(values):
    return dict(mean=sum(values) / len(values), spread=max(values) - min(values), values=values)


def chain_seed(args, seed):
    """Every step for one seed; returns {measure: {encoder: number}} and the stage-1 curves."""
    siglip = args.siglip
    ckpts = dict(random=None, siglip=siglip)
    curves = {}
    for distill in (False, True):
        name = 'granvit' if distill else 'granvit_nodistill'
        ckpts[name], curves[name] = stage1(args, seed, siglip, distill)
    specs = {n: c + (':backbone.' if n.startswith('granvit') else '') for n, c in ckpts.items() if c}
    attrs = frozen_probe(args, seed, 'region_probe.py', 'probe.json', specs)
    res = dict(probe={n: attrs[n]['mean'] for n in ENCODERS})
    detail = frozen_probe(args, seed, 'spatial_probe.py', 'spatial.json', specs)  # the detail tokens keep
    for measure in ('pixel_r2', 'edge_cell_acc', 'position_acc'):
        res[measure] = {n: detail[n][measure] for n in ENCODERS}
    res['rouge_l'] = {n: curves[n]['rouge_l'][-1][1] for n in curves}
    if args.det_iters:
        res['det_map'] = {n: detection(args, seed, n, ckpts[n]) for n in ENCODERS}
    if seed in args.stage2_seeds and args.stage2_iters:
        s2 = {n: stage2(args, seed, n, ckpts[n]) for n in ENCODERS[1:]}
        res['stage2_acc50'] = {n: m['metrics']['caption2bbox/acc_iou0.5'] for n, m in s2.items()}
    return res, curves


def summarise(per_seed):
    """{measure: {encoder: mean/spread/values}} over the seeds that have the measure."""
    out = {}
    for measure in ('probe', 'pixel_r2', 'edge_cell_acc', 'position_acc', 'det_map', 'stage2_acc50',
                    'rouge_l'):
        runs = [r[measure] for r in per_seed.values() if measure in r]
        if runs:
            out[measure] = {n: spread([r[n] for r in runs]) for n in runs[0]}
    return out


def table(summary, seeds):
    names = dict(probe='region probe, mean attribute acc. %',
                 pixel_r2='patch pixels from its token, ridge R^2 %',
                 edge_cell_acc='box-edge sub-cells from the token, acc. %',
                 position_acc='patch position from the token, acc. %', det_map='RetinaNet bbox mAP x100',
                 stage2_acc50='stage 2 Caption2Bbox Acc@0.5 %', rouge_l='stage 1 val Bbox2Caption ROUGE-L')
    lines = ['| measure | ' + ' | '.join(ENCODERS) + ' |', '| --- |' + ' --- |' * len(ENCODERS)]
    for measure, by_enc in summary.items():
        cells = [f"{by_enc[n]['mean']:.1f} ± {by_enc[n]['spread'] / 2:.1f}" if n in by_enc else ''
                 for n in ENCODERS]
        n_seeds = len(next(iter(by_enc.values()))['values'])
        lines.append(f'| {names[measure]} (n={n_seeds}) | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + f'\n\nmean ± half the spread (max - min) over seeds {seeds}\n'


def plot(curves, path):
    """Stage-1 curves of every seed: val ROUGE-L, the caption loss, and the distillation MSE."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = (('rouge_l', 'val Bbox2Caption ROUGE-L'), ('loss_caption', 'train loss_caption'),
              ('mse_distill', 'train mse_distill (scale-free)'))
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for ax, (key, title) in zip(axes, panels):
        for seed, by_run in curves.items():
            for name, run in by_run.items():
                if run[key]:
                    ax.plot(*zip(*run[key]), marker='o' if key == 'rouge_l' else None, alpha=0.7,
                            color='C0' if name == 'granvit' else 'C1',
                            label=name if seed == min(curves) else None)
        ax.set_title(title)
        ax.set_xlabel('stage-1 iteration')
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/toy_chain')
    p.add_argument('--data-root', default='data/gran_synth')
    p.add_argument('--llm-path', default='data/tiny_llm', help="the frozen tiny LLM (`make demo` builds it)")
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--siglip', default='data/tiny_siglip/granvit_tiny_siglip.pth',
                   help='the start encoder (`make tiny-siglip`), as a GranViT checkpoint')
    p.add_argument('--stage1-iters', type=int, default=1000)
    p.add_argument('--det-iters', type=int, default=300,
                   help='RetinaNet iterations (0 skips detection); short, where a better start should show '
                   '(1000 from random init nears saturation)')
    p.add_argument('--stage2-iters', type=int, default=500, help='0 skips stage 2')
    p.add_argument('--stage2-seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS of every step')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.work_dir, args.data_root, args.llm_path, args.siglip = (
        osp.abspath(p) for p in (args.work_dir, args.data_root, args.llm_path, args.siglip))
    os.makedirs(args.work_dir, exist_ok=True)
    for path, hint in ((args.data_root, 'make data'), (args.siglip, 'make tiny-siglip'),
                       (args.llm_path, 'make tiny-llm')):
        if not osp.exists(path):
            sys.exit(f'[toy_chain] {path} is missing; run `{hint}` (or `make demo`) first')
    coco = osp.join(args.data_root, 'annotations', 'val_coco_shape.json')
    if args.det_iters and not osp.isfile(coco):
        run([PY, 'tools/misc/make_gran_synth_coco.py', '--data-root', args.data_root],
            osp.join(args.work_dir, 'coco.log'))
    t0 = time.time()
    per_seed, curves = {}, {}
    for seed in args.seeds:
        per_seed[seed], curves[seed] = chain_seed(args, seed)
    summary = summarise(per_seed)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(args=vars(args), per_seed=per_seed, summary=summary, curves=curves), f, indent=1)
    text = table(summary, args.seeds)
    with open(osp.join(args.work_dir, 'table.md'), 'w') as f:
        f.write(text)
    plot(curves, osp.join(args.work_dir, 'curves.png'))
    print(text)
    print(f'[toy_chain] {time.time() - t0:.0f} s; results in '
          f'{args.work_dir}/(results.json, table.md, curves.png)')


if __name__ == '__main__':
    main()
