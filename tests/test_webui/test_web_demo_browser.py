"""The web demo in a real headless browser (Debian's chromium driven by selenium).

The server runs in this process on a free localhost port, on a stage-1 checkpoint made for the test; the
expected answers come from the same inferencer called directly. Skipped, with the reason, when Gradio,
selenium, chromium or chromedriver is missing (CI installs them: see docs/inference.md).
"""
import io
import os
import shutil
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(demo_inferencer, tmp_path_factory):
    from granvit_mm.webui import DemoBackend, build_demo, launch_demo, prepare_environment
    out_dir = tmp_path_factory.mktemp('web_demo')
    cache = prepare_environment(str(out_dir))
    demo = build_demo(DemoBackend(demo_inferencer, label='test'))
    port = free_port()
    launch_demo(demo, port=port, block=False, quiet=True)
    yield dict(url=f'http://127.0.0.1:{port}/', demo=demo, cache=cache, inferencer=demo_inferencer)
    demo.close()


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
    img, _ = synth_images(2)[1]  # 128x104, two shapes
    img.save(base / 'scene.png')
    (base / 'notes.txt').write_text('this is not an image')
    Image.new('RGB', (1200, 1000), (200, 10, 10)).save(base / 'big.png')  # 1.2 MP, over the 1 MP test cap
    return dict(scene=str(base / 'scene.png'), text=str(base / 'notes.txt'), big=str(base / 'big.png'),
                image=np.asarray(img))


# ---------------------------------------------------------------------------------------------- helpers
def value(driver, elem_id):
    field = driver.find_element(By.CSS_SELECTOR, f'#{elem_id} textarea, #{elem_id} input')
    return field.get_attribute('value')


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


def near(img, x, y, colour, radius=2):
    patch = img[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].reshape(-1, 3)
    return any(tuple(p) == colour for p in patch)


# ------------------------------------------------------------------------------------------------ test
def test_demo_in_a_browser(server, browser, files):
    infer, image = server['inferencer'], files['image']
    browser.get(server['url'])
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.ID, 'caption-btn'))

    upload(browser, files['scene'])
    wait_value(browser, 'status', lambda v: v.startswith('Loaded a 128x104 image'), 'upload')
    src, shown = picture(browser)
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

    # bad inputs: a readable message each, and the server keeps serving
    type_into(browser, 'phrase', '')
    click(browser, 'ground-btn')
    wait_value(browser, 'status', lambda v: v == 'Error: the phrase to ground is empty', 'empty phrase')
    type_into(browser, 'box', '0, 0, 500, 50')
    click(browser, 'caption-btn')
    wait_value(browser, 'status',
               lambda v: v.startswith('Error: box 0 [0, 0, 500, 50] is outside the 128x104'),
               'box outside the image')
    upload(browser, files['text'])
    wait_value(browser, 'status', lambda v: 'is not an image Pillow can read' in v, 'text file as image')
    upload(browser, files['big'])
    wait_value(browser, 'status', lambda v: 'over the limit of 1000000 pixels' in v, 'too many pixels')
    type_into(browser, 'box', '10, 10, 60, 60')
    click(browser, 'caption-btn')  # the previous image is still there and the server answers
    caption = infer.caption_regions(image, [[10, 10, 60, 60]])[0]
    wait_value(browser, 'answer', lambda v: v == f'[10, 10, 60, 60]: {caption}', 'caption after errors')
    assert value(browser, 'status') == 'Done.'
    # the page loaded nothing from anywhere but this server (no fonts, scripts or analytics from outside)
    hosts = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    local = [h.startswith(server['url'][:-1]) or h.startswith(('data:', 'blob:')) for h in hosts]
    assert hosts and all(local), \
        [h for h in hosts if not h.startswith(server['url'][:-1])]


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
