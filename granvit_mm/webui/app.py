"""The Gradio page: upload an image, draw (two clicks) or type a box -> caption, phrase -> box, features.

Element ids (``elem_id``) are part of the interface: the browser test drives the page through them.
Gradio's idioms: a bad input raises ``gr.Error`` (shown to that user; the page keeps its state), every event
that runs the model shares one concurrency group of size 1 (``MODEL_QUEUE``: one model, many sessions), and
pictures are returned as files that no other request writes (:mod:`granvit_mm.webui.pictures`).
"""
import html
from typing import Optional, Sequence

from .backend import OK, DemoBackend
from .pictures import write_picture

TITLE = 'GranViT: region captions, grounding and dense features'
HELP = ('Upload an image (or pick an example), then click two opposite corners on it (or type '
        '`x1, y1, x2, y2` in image pixels) and press **Caption box**; type a phrase and press '
        '**Ground phrase** to get its box; **Feature view** shows a PCA of the encoder\'s dense features. '
        'Stage-1 checkpoints caption regions far better than they ground phrases (the paper: about 13% of '
        'phrases within IoU 0.5 after stage 1, 55% after stage 2).')
MODEL_QUEUE = 'granvit-model'  # the concurrency group of every event that runs the model

# small images (GranSynth is 128 px) are shown enlarged; Gradio maps clicks back to image pixels itself
CSS = '#picture img, #features img { width: 100%; height: 100%; object-fit: contain; }'


def theme():
    """Default theme with system fonts: the page makes no request outside this server."""
    import gradio as gr
    system = [gr.themes.Font('ui-sans-serif'), gr.themes.Font('system-ui'), gr.themes.Font('sans-serif')]
    mono = [gr.themes.Font('ui-monospace'), gr.themes.Font('monospace')]
    return gr.themes.Default(font=system, font_mono=mono)


def build_demo(backend: DemoBackend, title: str = TITLE, note: Optional[str] = None,
               examples: Sequence[str] = ()):
    """A ``gr.Blocks`` app over ``backend``; launch it with :func:`granvit_mm.webui.launch_demo`.

    ``examples``: image files offered as one-click uploads (``tools/web_demo.py`` gives GranSynth val images).
    """
    import gradio as gr
    from gradio.utils import get_upload_folder

    def done(out, msg):
        """The action's outputs, or ``gr.Error`` with its message (escaped: Gradio renders it as HTML)."""
        if out is None:  # the backend already logged an unexpected error's traceback; bad input needs none
            raise gr.Error(html.escape(msg[len('Error: '):] if msg.startswith('Error: ') else msg),
                           print_exception=False)
        return out, ('Done.' if msg == OK else msg)

    def shown(picture):
        return write_picture(picture, get_upload_folder())

    def on_upload(path):
        image, msg = done(*backend.load(path))
        return image, shown(image), None, '', msg

    def on_click(image, corner, evt: gr.SelectData):
        (picture, corner, box), msg = done(*backend.click(image, corner, evt.index))
        return shown(picture), corner, (box if box is not None else gr.skip()), msg

    def on_caption(image, box_text):
        (picture, text), msg = done(*backend.caption(image, box_text))
        return shown(picture), text, msg

    def on_global(image):
        return done(*backend.global_caption(image))

    def on_ground(image, phrase):
        (picture, text), msg = done(*backend.ground(image, phrase))
        return shown(picture), text, msg

    def on_features(image):
        view, msg = done(*backend.features(image))
        return shown(view), msg

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        image = gr.State(None)  # the uploaded RGB image, per browser session
        corner = gr.State(None)  # first click of a two-click box
        gr.Markdown(f'## {title}\n{HELP}' + (f'\n\n{note}' if note else ''))
        with gr.Row():
            with gr.Column(scale=3):
                upload = gr.UploadButton('Upload image', type='filepath', file_count='single',
                                         elem_id='upload')
                picture = gr.Image(label='Image (click two corners to draw a box)', type='filepath',
                                   interactive=False, format='png', elem_id='picture', height=420)
                status = gr.Textbox(label='Status', interactive=False, elem_id='status',
                                    value='Upload an image to start.')
                example = gr.Image(type='filepath', visible=False, elem_id='example')
            with gr.Column(scale=2):
                box = gr.Textbox(label='Box: x1, y1, x2, y2 (image pixels)', elem_id='box')
                with gr.Row():
                    caption_btn = gr.Button('Caption box', variant='primary', elem_id='caption-btn')
                    global_btn = gr.Button('Global caption', elem_id='global-btn')
                phrase = gr.Textbox(label='Phrase to ground', elem_id='phrase')
                ground_btn = gr.Button('Ground phrase', variant='primary', elem_id='ground-btn')
                answer = gr.Textbox(label='Answer', interactive=False, lines=3, elem_id='answer')
                features_btn = gr.Button('Feature view', elem_id='features-btn')
                features = gr.Image(label='Dense features (PCA to RGB)', show_label=False, type='filepath',
                                    interactive=False, format='png', elem_id='features')

        loaded = [image, picture, corner, box, status]
        upload.upload(on_upload, upload, loaded)
        if examples:  # a click on an example is an upload of that file
            gr.Examples([[p] for p in examples], inputs=example, outputs=loaded, fn=on_upload,
                        run_on_click=True, cache_examples=False, label='Examples (GranSynth val)',
                        elem_id='examples', examples_per_page=8)
        picture.select(on_click, [image, corner], [picture, corner, box, status])
        model = dict(concurrency_id=MODEL_QUEUE, concurrency_limit=1)
        caption_btn.click(on_caption, [image, box], [picture, answer, status], **model)
        box.submit(on_caption, [image, box], [picture, answer, status], **model)
        global_btn.click(on_global, image, [answer, status], **model)
        ground_btn.click(on_ground, [image, phrase], [picture, answer, status], **model)
        phrase.submit(on_ground, [image, phrase], [picture, answer, status], **model)
        features_btn.click(on_features, image, [features, status], **model)
    return demo
