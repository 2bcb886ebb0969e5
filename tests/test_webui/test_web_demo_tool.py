"""tools/web_demo.py's model and examples: a stage-1 default, a stage-2 XTuner checkpoint or a transformers
LLaVA export, and GranSynth val images as examples (the server itself: test_web_demo_browser.py)."""
from PIL import Image
from repo_tools import load_tool


def test_models_and_examples(stage2_assets, tmp_path):
    from granvit_mm.apis.llava_chat_models import HFLlavaChatModel, XTunerLLaVAChatModel
    tool = load_tool('tools/web_demo.py', 'granvit_web_demo_tool')
    args = tool.parse_args([])
    assert (args.config, args.checkpoint) == (tool.DEFAULT_CONFIG, tool.DEFAULT_CHECKPOINT)
    args = tool.parse_args([stage2_assets['config'], stage2_assets['checkpoint'], '--max-pixels', '1000'])
    backend, checkpoint = tool.build_backend(args)
    assert (isinstance(backend.inferencer.model, XTunerLLaVAChatModel)
            and checkpoint == stage2_assets['checkpoint'])
    assert backend.inferencer.max_pixels == 1000
    backend, checkpoint = tool.build_backend(tool.parse_args([stage2_assets['hf_dir']]))
    assert isinstance(backend.inferencer.model, HFLlavaChatModel) and checkpoint == stage2_assets['hf_dir']
    for name in ('b.png', 'a.png', 'c.jpg', 'notes.txt'):
        if name.endswith('txt'):
            (tmp_path / name).write_text('x')
        else:
            Image.new('RGB', (4, 4)).save(tmp_path / name)
    assert [p.split('/')[-1] for p in tool.example_images(str(tmp_path), 2)] == ['a.png', 'b.png']
    assert (tool.example_images(str(tmp_path / 'missing'), 8) == []
            and tool.example_images(str(tmp_path), 0) == [])
