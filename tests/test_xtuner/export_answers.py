"""Load an exported LLaVA with transformers alone and answer questions (run in a subprocess by the tests).

    python export_answers.py EXPORT_DIR IMAGES.npz QUESTIONS.json OUT.json [--block granvit_mm,cv2]

Imports nothing of the project: with ``--block``, those packages are made unimportable (``sys.modules[name] =
None``, as if not installed), so a load that needs them fails. Writes the greedy answers of the documented
usage (chat template + processor + ``generate``), the answers when ``eos_token_id=tokenizer.eos_token_id`` is
passed as lmms-eval's llava_hf does, the pixel values of every image in several input forms, and the
transformers version.
"""
import json
import sys


def main(argv):
    export_dir, images_file, questions_file, out_file = argv[:4]
    if '--block' in argv:  # as if not installed: `import x` raises ImportError, find_spec('x') gives None
        for name in argv[argv.index('--block') + 1].split(','):
            sys.modules[name] = None
    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    images = [a for _, a in sorted(np.load(images_file).items())]
    questions = json.load(open(questions_file))
    processor = AutoProcessor.from_pretrained(export_dir, trust_remote_code=True)
    model = LlavaForConditionalGeneration.from_pretrained(export_dir).eval()
    tok = processor.tokenizer
    out = dict(transformers=transformers.__version__, answers=[], lmms_style=[], pixels={},
               eos_token=tok.eos_token, generation_eos=model.generation_config.eos_token_id)
    for img in images:
        answers, lmms = [], []
        for q in questions:
            prompt = processor.apply_chat_template([{'role': 'user', 'content': [
                {'type': 'image'}, {'type': 'text', 'text': q}]}], add_generation_prompt=True)
            inputs = processor(images=Image.fromarray(img), text=prompt, return_tensors='pt')
            n = inputs['input_ids'].shape[1]
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, n:]
                ids2 = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0, n:]
            answers.append(processor.decode(ids, skip_special_tokens=True).strip())
            lmms.append(processor.decode(ids2, skip_special_tokens=True).strip())
        out['answers'].append(answers)
        out['lmms_style'].append(lmms)
    ip = processor.image_processor
    forms = dict(pil=[Image.fromarray(im) for im in images], hwc=list(images),
                 batch1=[im[None] for im in images], nested=[[[im]] for im in images],
                 chw=[torch.from_numpy(im).permute(2, 0, 1) for im in images],
                 float01=[im.astype(np.float32) / 255 for im in images])
    for name, items in forms.items():
        out['pixels'][name] = [ip(item, return_tensors='np')['pixel_values'].tolist() for item in items]
    json.dump(out, open(out_file, 'w'))


if __name__ == '__main__':
    main(sys.argv[1:])
