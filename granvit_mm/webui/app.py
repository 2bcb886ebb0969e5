"""The Gradio page: upload an image, draw (two clicks) or type a box -> caption, phrase -> box, features.

Element ids (``elem_id``) are part of the interface: the browser test drives the page through them.
"""
from typing import Optional

from .backend import OK, DemoBackend

TITLE = 'GranViT: region captions, grounding and dense features'
HELP = ('Upload an image, then click two opposite corners on it (or type `x1, y1, x2, y2` in image pixels) and '
        'press **Caption box**; type a phrase and press **Ground phrase** to get its box; **Feature view** shows '
        'a PCA of the encoder\'s dense features. Stage-1 checkpoints caption regions far better than they ground '
        'phrases (the paper: about 13% of phrases within IoU 0.5 after stage 1, 55% after stage 2).')


# small images (GranSynth is 128 px) are shown enlarged; Gradio maps clicks back to image pixels itself
CSS = '#picture img, #features img { width: 100%; height: 100%; object-fit: contain; }'


def theme():
    """Default theme with system fonts: the page makes no request outside this server."""
    import gradio as gr
    system = [gr.themes.Font('ui-sans-serif'), gr.themes.Font('system-ui'), gr.themes.Font('sans-serif')]
    mono = [gr.themes.Font('ui-monospace'), gr.themes.Font('monospace')]
    return gr.themes.Default(font=system, font_mono=mono)


def build_demo(backend: DemoBackend, title: str = TITLE, note: Optional[str] = None):
    """A ``gr.Blocks`` app over ``backend``; launch it with :func:`granvit_mm.webui.launch_demo`."""
    import gradio as gr

    def status_of(msg):
        return msg if msg != OK else 'Done.'

    def on_upload(path):
        image, msg = backend.load(path)
        if image is None:  # keep the previous image, say what was wrong
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), msg
        return image, image, None, '', msg

    def on_click(image, corner, evt: gr.SelectData):
        out, msg = backend.click(image, corner, evt.index)
        if out is None:
            return gr.skip(), gr.skip(), gr.skip(), msg
        picture, corner, box = out
        return picture, corner, (box if box is not None else gr.skip()), msg

    def on_caption(image, box_text):
        out, msg = backend.caption(image, box_text)
        return (gr.skip(), gr.skip(), msg) if out is None else (out[0], out[1], status_of(msg))

    def on_global(image):
        out, msg = backend.global_caption(image)
        return (gr.skip(), msg) if out is None else (out, status_of(msg))

    def on_ground(image, phrase):
        out, msg = backend.ground(image, phrase)
        return (gr.skip(), gr.skip(), msg) if out is None else (out[0], out[1], status_of(msg))

    def on_features(image):
        out, msg = backend.features(image)
        return (gr.skip(), msg) if out is None else (out, status_of(msg))

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        image = gr.State(None)  # the uploaded RGB image, per browser session
        corner = gr.State(None)  # first click of a two-click box
        gr.Markdown(f'## {title}\n{HELP}' + (f'\n\n{note}' if note else ''))
        with gr.Row():
            with gr.Column(scale=3):
                upload = gr.UploadButton('Upload image', type='filepath', file_count='single', elem_id='upload')
                picture = gr.Image(label='Image (click two corners to draw a box)', type='numpy', interactive=False,
                                   format='png', elem_id='picture', height=420)
                status = gr.Textbox(label='Status', interactive=False, elem_id='status',
                                    value='Upload an image to start.')
            with gr.Column(scale=2):
                box = gr.Textbox(label='Box: x1, y1, x2, y2 (image pixels)', elem_id='box')
                with gr.Row():
                    caption_btn = gr.Button('Caption box', variant='primary', elem_id='caption-btn')
                    global_btn = gr.Button('Global caption', elem_id='global-btn')
                phrase = gr.Textbox(label='Phrase to ground', elem_id='phrase')
                ground_btn = gr.Button('Ground phrase', variant='primary', elem_id='ground-btn')
                answer = gr.Textbox(label='Answer', interactive=False, lines=3, elem_id='answer')
                features_btn = gr.Button('Feature view', elem_id='features-btn')
                features = gr.Image(label='Dense features (PCA to RGB)', show_label=False, type='numpy',
                                    interactive=False, format='png', elem_id='features')

        upload.upload(on_upload, upload, [image, picture, corner, box, status])
        picture.select(on_click, [image, corner], [picture, corner, box, status])
        caption_btn.click(on_caption, [image, box], [picture, answer, status])
        box.submit(on_caption, [image, box], [picture, answer, status])
        global_btn.click(on_global, image, [answer, status])
        ground_btn.click(on_ground, [image, phrase], [picture, answer, status])
        phrase.submit(on_ground, [image, phrase], [picture, answer, status])
        features_btn.click(on_features, image, [features, status])
    return demo
