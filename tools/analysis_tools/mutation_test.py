"""Mutation testing of the code whose mistakes would be silent (docs/testing.md), with mutmut, by hand.

One mutmut project per group under ``work_dirs/mutation/<group>/``: the package and the tests are copied
there by mutmut, only the group's files are mutated, and each mutant runs only the fast tests of the group
that reach the mutated function (mutmut records which those are in a first, clean run). Results are cached
there, so a second run only tries new or changed mutants.

    flock /tmp/granvit_cpu.lock nice -n 5 .venv/bin/python tools/analysis_tools/mutation_test.py losses
    .venv/bin/python tools/analysis_tools/mutation_test.py losses --report      # score and survivors again

Not run by CI: mutmut is in requirements/dev.txt.
"""
import argparse
import configparser
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# group -> (files to mutate, the fast tests that cover them). Tests that only exercise the code in a
# subprocess (CLIs, kill/resume) are left out: they cannot see the mutants and only cost time.
_CORE_TESTS = ['tests/test_core', 'tests/test_datasets/test_gran_format.py',
               'tests/test_datasets/test_bad_records.py', 'tests/test_datasets/test_transforms.py',
               'tests/test_datasets/test_region_tasks.py',
               'tests/test_models/test_heads/test_region_ar_head.py',
               'tests/test_xtuner/test_gran_llava_dataset.py',
               'tests/test_models/test_backbones/test_siglip2_conversion.py',
               'tests/test_models/test_backbones/test_granvit.py',
               'tests/test_xtuner/test_visual_tokens.py',
               'tests/test_apis/test_inferencer_geometry.py']
GROUPS = {
    'losses': (['granvit_mm/models/losses/*'],
               ['tests/test_models/test_losses', 'tests/test_models/test_algorithms']),
    'metrics': (['granvit_mm/evaluation/metrics/*'],
                ['tests/test_evaluation/test_region_metrics.py', 'tests/test_xtuner/test_eval_stage2.py']),
    'packing': (['granvit_mm/models/utils/packing.py'],
                ['tests/test_models/test_heads/test_region_ar_head.py', 'tests/test_core']),
    # core/checkpoint_reader.py is mutated (with its own tests) in the checkpoint_io group
    'core': ([f'granvit_mm/core/{name}.py' for name in (
        '__init__', 'box_text', 'chat_format', 'checkpoint_layout', 'geometry', 'gran_record', 'image_input',
        'paths', 'prompts', 'siglip_keys', 'visual_tokens')], _CORE_TESTS),
    'checkpoint_io': (['granvit_mm/engine/checkpoint_io.py', 'granvit_mm/core/checkpoint_reader.py'],
                      ['tests/test_engine/test_checkpoint_io.py', 'tests/test_core/test_checkpoint_reader.py',
                       'tests/test_engine/test_faults.py',
                       'tests/test_engine/test_weights_only_checkpoint.py']),
    'fsdp': (['granvit_mm/engine/fsdp.py'],
             ['tests/test_engine/test_fsdp_unit.py',
              'tests/test_engine/test_distributed.py::test_fsdp_units_are_the_student_vit_and_its_blocks']),
    'hf_llava': (['granvit_mm/xtuner/hf_llava.py'], ['tests/test_xtuner/test_export_hf_llava.py']),
    # the data engine's filter stage (and the rules it applies), its writer and its atomic shard files
    'data_engine': (['granvit_mm/data_engine/filters.py', 'granvit_mm/data_engine/writer.py',
                     'granvit_mm/data_engine/shards.py', 'granvit_mm/datasets/converters/filters.py'],
                    ['tests/test_data_engine/test_filters_writer_shards.py',
                     'tests/test_data_engine/test_engine_run.py', 'tests/test_data_engine/test_bad_images.py',
                     'tests/test_data_engine/test_resume_and_scale.py',
                     'tests/test_datasets/test_converters.py::test_filter_reports_each_rule']),
    'stage2_eval': (['granvit_mm/xtuner/stage2_eval.py'], ['tests/test_xtuner/test_eval_stage2.py']),
}
# slow tests that reach the code only through a subprocess or a full training run
DESELECT = ['tests/test_engine/test_kill_resume.py',
            'tests/test_engine/test_faults.py::test_a_shard_that_disappears_mid_run',
            'tests/test_engine/test_faults.py::test_a_dead_dataloader_worker_stops_the_run_with_its_cause',
            'tests/test_models/test_backbones/test_siglip2_conversion.py::test_cli',
            'tests/test_xtuner/test_export_hf_llava.py::test_cli_export_answers_like_the_xtuner_model',
            'tests/test_xtuner/test_export_hf_llava.py::test_wrong_checkpoint_is_refused',
            'tests/test_xtuner/test_export_hf_llava.py::test_xtuner_convert_pth_to_hf_gives_our_export',
            # the data engine killed and rerun as a CLI, in a process pool, under Ray: other processes
            *(f'tests/test_data_engine/test_resume_and_scale.py::{t}' for t in (
                'test_sigkill_at_two_points_then_rerun_equals_uninterrupted',
                'test_process_pool_of_two_writes_the_loops_bytes',
                'test_ray_data_on_two_local_cpus_writes_the_loops_bytes'))]
# per group: tests that cannot run on mutated code. The exported image processor is generated from the
# source of core/geometry.py and core/image_input.py (inspect.getsource), which under mutmut carries its
# trampolines: the exported file would not import, whatever the mutant.
GROUP_DESELECT = {
    'core': ['tests/test_xtuner/test_visual_tokens.py::test_exported_processor_is_the_stage1_preprocessing'],
}
# groups whose mutated files do not build the session-wide test assets (the stage-2 ones of
# tests/test_xtuner/conftest.py, the GranSynth and stage-1 captioner of tests/test_data_engine/conftest.py):
# built once per run of this script instead of once per mutant (seconds each)
CACHED_ASSETS = {'hf_llava', 'data_engine'}
COPIED = ['configs', 'tools', 'projects']  # what the tests read from the repository besides the package


def setup_project(group: str, debug: bool = False) -> str:
    """``work_dirs/mutation/<group>/``: links to the sources, a setup.cfg with the pytest and mutmut parts."""
    mutate, tests = GROUPS[group]
    work = osp.join(ROOT, 'work_dirs', 'mutation', group)
    os.makedirs(work, exist_ok=True)
    for name in ['granvit_mm', 'tests'] + COPIED:
        link = osp.join(work, name)
        if not osp.lexists(link):
            os.symlink(osp.join(ROOT, name), link)
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(osp.join(ROOT, 'setup.cfg'))
    pytest_cfg = {k: v for k, v in cfg['tool:pytest'].items()}
    out = configparser.ConfigParser(interpolation=None)
    out['tool:pytest'] = pytest_cfg
    out['mutmut'] = {
        'source_paths': 'granvit_mm',
        'only_mutate': '\n' + '\n'.join(mutate),
        'also_copy': '\n' + '\n'.join(COPIED),
        'pytest_add_cli_args_test_selection': '\n' + '\n'.join(
            t for t in tests if osp.exists(osp.join(ROOT, t.split('::')[0]))),
        'pytest_add_cli_args': '\n' + '\n'.join(
            f'--deselect={d}' for d in DESELECT + GROUP_DESELECT.get(group, [])),
        'process_isolation': 'forkserver',
        'use_git_change_detection': 'false',
        'debug': str(debug).lower(),
    }
    with open(osp.join(work, 'setup.cfg'), 'w') as f:
        out.write(f)
    return work


def mutmut(work: str, *args: str, capture: bool = False):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH='')
    if osp.basename(work) in CACHED_ASSETS:
        env['GRANVIT_TEST_ASSETS'] = osp.join(work, 'assets')
    # tests/conftest.py then runs a mutant's tests fastest first (by mutmut's own timings)
    env['GRANVIT_FAST_TESTS_FIRST'] = osp.join(work, 'mutants', 'mutmut-stats.json')
    # ``python -m mutmut``: the venv's ``mutmut`` script may carry another tree's interpreter path
    return subprocess.run([sys.executable, '-m', 'mutmut', *args], cwd=work, env=env, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None)


def report(work: str) -> dict:
    """Counts per status and the surviving mutants (``mutmut results --all``)."""
    lines = mutmut(work, 'results', '--all', 'true', capture=True).stdout.splitlines()
    counts, survivors = {}, []
    for line in lines:
        if ':' not in line:
            continue
        name, status = [s.strip() for s in line.rsplit(':', 1)]
        counts[status] = counts.get(status, 0) + 1
        if status == 'survived':
            survivors.append(name)
    killed = counts.get('killed', 0) + counts.get('timeout', 0) + counts.get('segfault', 0)
    tried = killed + counts.get('survived', 0)
    return dict(counts=counts, killed=killed, tried=tried, score=round(100.0 * killed / max(tried, 1), 1),
                survivors=survivors)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('group', choices=sorted(GROUPS))
    parser.add_argument('mutants', nargs='*',
                        help='mutant names (globs) to (re)run; default: all not yet run')
    parser.add_argument('--report', action='store_true', help='only print the score and the survivors')
    parser.add_argument('--survivors', action='store_true',
                        help='re-run only the mutants that survived last time')
    parser.add_argument('--fresh', action='store_true', help='forget cached results of this group')
    parser.add_argument('--debug', action='store_true', help="show pytest's output (mutmut's debug)")
    args = parser.parse_args(argv)
    work = setup_project(args.group, args.debug)
    if args.fresh:
        shutil.rmtree(osp.join(work, 'mutants'), ignore_errors=True)
    mutants = list(args.mutants)
    if args.survivors:
        mutants += report(work)['survivors']
        if not mutants:
            args.report = True
    if not args.report:
        shutil.rmtree(osp.join(work, 'assets'), ignore_errors=True)  # rebuilt from this tree's code
        mutmut(work, 'run', '--max-children', '1', *mutants)
    result = report(work)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return result


if __name__ == '__main__':
    main()
