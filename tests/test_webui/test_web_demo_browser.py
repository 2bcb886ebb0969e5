"""The web demo in a real headless browser (Debian's chromium driven by selenium).

The server runs in this process on a free localhost port, on a stage-1 checkpoint made for the test (and a
stage-2 one for grounding); the expected answers come from the same inferencer called directly. Skipped, with
the reason, when Gradio,
selenium, chromium or chromedriver is missing (CI installs them: see docs/inference.md).
"""
import io
import os
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip('gradio',
                             reason='the web demo needs gradio: pip install -r requirements/demo.txt')
pytest.importorskip('selenium',
                    reason='the browser test needs selenium: pip install -r requirements/demo.txt')

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason='no chromium/chromedriver: apt-get install -y chromium chromium-driver'),
]
REGION = (30, 144, 255)
GROUND = (255, 64, 0)
TIMEOUT = 90


@pytest.fixture(scope='module')
def server(demo_inferencer, tmp_path_factory, files):
    from demo_server import demo_server
    out_dir = tmp_path_factory.mktemp('web_demo')
    with demo_server(demo_inferencer, out_dir, examples=files['examples']) as server:
        yield server


@pytest.fixture(scope='module')
def stage2_server(stage2_inferencer, tmp_path_factory):
    from demo_server import demo_server
    with demo_server(stage2_inferencer, tmp_path_factory.mktemp('web_demo_stage2')) as server:
        yield server


@pytest.fixture(scope='module')
def browser():
    opts = webdriver.ChromeOptions()
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=1400,1100', '--no-first-run', '--disable-extensions'):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    from stage1_assets import synth_images
    base = tmp_path_factory.mktemp('uploads')
    scenes = synth_images(4)
    img, _ = scenes[1]  # 128x104, two shapes
    img.save(base / 'scene.png')
    (base / 'notes.txt').write_text('this is not an image')
    Image.new('RGB', (1200, 1000), (200, 10, 10)).save(base / 'big.png')  # 1.2 MP, over the 1 MP test cap
    examples = []
    for i in (2, 3):  # GranSynth val images as the page's examples
        scenes[i][0].save(base / f'example{i}.png')
        examples.append(str(base / f'example{i}.png'))
    return dict(scene=str(base / 'scene.png'), text=str(base / 'notes.txt'), big=str(base / 'big.png'),
                image=np.asarray(img), examples=examples,
                example_images=[np.asarray(scenes[i][0]) for i in (2, 3)])


# ---------------------------------------------------------------------------------------------- helpers
def value(driver, elem_id):
    return driver.find_element(By.CSS_SELECTOR,
                               f'#{elem_id} textarea, #{elem_id} input').get_attribute('value')


def wait_value(driver, elem_id, predicate, what):
    try:
        return WebDriverWait(driver, TIMEOUT).until(lambda d: (lambda v: v if predicate(v) else False)(
            value(d, elem_id)))
    except TimeoutException:
        pytest.fail(f'{what}: #{elem_id} is {value(driver, elem_id)!r}')


def type_into(driver, elem_id, text):
    box = driver.find_element(By.CSS_SELECTOR, f'#{elem_id} textarea, #{elem_id} input')
    box.send_keys(Keys.CONTROL, 'a')  # as a person would: clear() fires no input event, so Gradio misses it
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def click(driver, elem_id):
    driver.find_element(By.ID, elem_id).click()


def upload(driver, path):
    driver.find_element(By.CSS_SELECTOR, '#upload input[type=file], input[data-testid$="upload-button"]') \
        .send_keys(path)


def picture(driver, elem_id='picture', old_src=None):
    """The image an element shows, fetched over HTTP as the browser does (waits for a new src)."""
    def src(d):
        imgs = d.find_elements(By.CSS_SELECTOR, f'#{elem_id} img')
        s = imgs[0].get_attribute('src') if imgs else None
        return s if s and s != old_src else False

    url = WebDriverWait(driver, TIMEOUT).until(src)
    with urllib.request.urlopen(url, timeout=30) as r:
        return url, np.asarray(Image.open(io.BytesIO(r.read())).convert('RGB'))


def wait_error(driver, text, what):
    """A ``gr.Error`` shown to the user (Gradio's toast) whose text holds ``text``; then closed."""
    def shown(d):
        bodies = d.find_elements(By.CSS_SELECTOR, '[data-testid="toast-body"]')
        return [b for b in bodies if text in b.text] or False

    try:
        WebDriverWait(driver, TIMEOUT).until(shown)
    except TimeoutException:
        texts = [b.text for b in driver.find_elements(By.CSS_SELECTOR, '[data-testid="toast-body"]')]
        pytest.fail(f'{what}: no error message with {text!r}; shown: {texts}')
    for close in driver.find_elements(By.CSS_SELECTOR, '[data-testid="toast-close"]'):
        driver.execute_script('arguments[0].click();', close)


def open_and_upload(driver, url, path):
    """The page at ``url`` with ``path`` uploaded; -> (picture src, picture shown)."""
    driver.get(url)
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.ID, 'caption-btn'))
    upload(driver, path)
    wait_value(driver, 'status', lambda v: v.startswith('Loaded a 128x104 image'), 'upload')
    return picture(driver)


def near(img, x, y, colour, radius=2):
    patch = img[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].reshape(-1, 3)
    return any(tuple(p) == colour for p in patch)


# ------------------------------------------------------------------------------------------------ test
def test_demo_in_a_browser(server, browser, files):
    infer, image = server['inferencer'], files['image']
    src, shown = open_and_upload(browser, server['url'], files['scene'])
    np.testing.assert_array_equal(shown, image)

    # type a box -> caption, and the box drawn on the picture
    type_into(browser, 'box', '45, 17, 105, 77')
    click(browser, 'caption-btn')
    caption = infer.caption_regions(image, [[45, 17, 105, 77]])[0]
    wait_value(browser, 'answer', lambda v: v == f'[45, 17, 105, 77]: {caption}', 'caption')
    src, drawn = picture(browser, old_src=src)
    assert drawn.shape == image.shape and near(drawn, 45, 47, REGION) and near(drawn, 105, 47, REGION)

    # a phrase -> its box drawn
    expected = infer.ground(image, 'a red circle')[0]
    assert expected['bbox'] is not None  # the test LLM answers with a box text
    type_into(browser, 'phrase', 'a red circle')
    click(browser, 'ground-btn')
    box_text = '[' + ', '.join(f'{v:g}' for v in expected['bbox']) + ']'
    wait_value(browser, 'answer', lambda v: v == f'"a red circle" -> {box_text}', 'grounding')
    src, drawn = picture(browser, old_src=src)
    x1, y1, x2, y2 = expected['bbox']
    assert near(drawn, round(x1), round((y1 + y2) / 2), GROUND)

    # draw a box with two clicks on the (enlarged) picture
    img_el = browser.find_element(By.CSS_SELECTOR, '#picture img')
    rect = browser.execute_script('const r = arguments[0].getBoundingClientRect(); '
                                  'return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, '
                                  'arguments[0].naturalHeight];', img_el)
    left, top, width, height, nat_w, nat_h = rect
    scale = min(width / nat_w, height / nat_h)  # object-fit: contain
    off_x, off_y = (width - nat_w * scale) / 2, (height - nat_h * scale) / 2
    targets = [(20, 30), (90, 80)]
    for tx, ty in targets:
        dx = off_x + (tx + 0.5) * scale - width / 2  # selenium offsets are from the element's centre
        dy = off_y + (ty + 0.5) * scale - height / 2
        ActionChains(browser).move_to_element_with_offset(img_el, dx, dy).click().perform()
        if (tx, ty) == targets[0]:
            wait_value(browser, 'status', lambda v: v.startswith('Corner at'), 'first click')
    typed = wait_value(browser, 'box', lambda v: v.count(',') == 3 and not v.startswith('45'), 'two clicks')
    got = [float(v) for v in typed.split(',')]
    np.testing.assert_allclose(got, [20, 30, 90, 80], atol=1.5)

    click(browser, 'global-btn')
    wait_value(browser, 'answer', lambda v: v == infer.caption_image(image), 'global caption')
    click(browser, 'features-btn')
    _, view = picture(browser, 'features')
    assert view.shape[1] == 256 + 8 + 256 and view.shape[2] == 3  # image | PCA of the features

    # bad inputs: a readable message each (gr.Error), and the server keeps serving
    type_into(browser, 'phrase', '')
    click(browser, 'ground-btn')
    wait_error(browser, 'the phrase to ground is empty', 'empty phrase')
    type_into(browser, 'box', '0, 0, 500, 50')
    click(browser, 'caption-btn')
    wait_error(browser, 'box 0 [0, 0, 500, 50] is outside the 128x104', 'box outside the image')
    upload(browser, files['text'])
    wait_error(browser, 'is not an image Pillow can read', 'text file as image')
    upload(browser, files['big'])
    wait_error(browser, 'over the limit of 1000000 pixels', 'too many pixels')
    type_into(browser, 'box', '10, 10, 60, 60')
    click(browser, 'caption-btn')  # the previous image is still there and the server answers
    caption = infer.caption_regions(image, [[10, 10, 60, 60]])[0]
    wait_value(browser, 'answer', lambda v: v == f'[10, 10, 60, 60]: {caption}', 'caption after errors')
    assert value(browser, 'status') == 'Done.'
    # the page loaded nothing from anywhere but this server (no fonts, scripts or analytics from outside)
    hosts = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert hosts and all(h.startswith(server['url'][:-1]) or h.startswith(('data:', 'blob:'))
                         for h in hosts), [h for h in hosts if not h.startswith(server['url'][:-1])]


def test_server_is_locked_down(server, files):
    demo, url = server['demo'], server['url']
    assert demo.server_name == '127.0.0.1' and not demo.share
    repo_file = os.path.abspath(__file__)
    for path in (repo_file, '/etc/hostname', server['inferencer'].checkpoint):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f'{url}gradio_api/file={path}', timeout=30)
        assert err.value.code == 403, path
    # an upload over the size cap is refused by the server itself
    body = b'x' * (10 * 1024 * 1024 + 1)
    boundary = 'granvitboundary'
    data = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            f'Content-Type: image/png\r\n\r\n').encode() + body + f'\r\n--{boundary}--\r\n'.encode()
    req = urllib.request.Request(f'{url}gradio_api/upload', data=data, method='POST',
                                 headers={'Content-Type': f'multipart/form-data; boundary={boundary}'})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 413


def test_an_example_loads_with_one_click(server, browser, files):
    browser.get(server['url'])
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#examples button'))
    browser.find_elements(By.CSS_SELECTOR, '#examples button')[1].click()
    h, w = files['example_images'][1].shape[:2]
    wait_value(browser, 'status', lambda v: v.startswith(f'Loaded a {w}x{h} image'), 'example')
    _, shown = picture(browser)
    np.testing.assert_array_equal(shown, files['example_images'][1])


def test_stage2_grounding_in_a_browser(stage2_server, browser, files):
    """The grounding tab on a stage-2 (XTuner) checkpoint: the phrase's box, mapped back to the image's
    pixels, drawn where the API puts it; captions too."""
    infer, image = stage2_server['inferencer'], files['image']
    src, _ = open_and_upload(browser, stage2_server['url'], files['scene'])
    phrase = 'a red circle'
    expected = infer.ground(image, phrase)[0]
    assert expected['bbox'] is not None  # the test LLM answers this phrase with a box text
    type_into(browser, 'phrase', phrase)
    click(browser, 'ground-btn')
    box_text = '[' + ', '.join(f'{v:g}' for v in expected['bbox']) + ']'
    wait_value(browser, 'answer', lambda v: v == f'"{phrase}" -> {box_text}', 'stage-2 grounding')
    src, drawn = picture(browser, old_src=src)
    x1, y1, x2, y2 = expected['bbox']
    assert near(drawn, round(x1), round((y1 + y2) / 2), GROUND) and near(drawn, round(x2), round(y2), GROUND)
    type_into(browser, 'box', '45, 17, 105, 77')
    click(browser, 'caption-btn')
    caption = infer.caption_regions(image, [[45, 17, 105, 77]])[0]
    wait_value(browser, 'answer', lambda v: v == f'[45, 17, 105, 77]: {caption}', 'stage-2 caption')
