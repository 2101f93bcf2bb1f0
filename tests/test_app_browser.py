"""lavis-gated-app in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium): a
checkpoint trained here for a few epochs is served on a free 127.0.0.1 port, an image is uploaded and a
question asked, and the page must show what the model gives directly; bad inputs give in-page messages.

Without Chromium (run_scripts/install_browser.sh installs it) the tests are skipped, except under CI=true,
where they fail. A screenshot of the answered page is saved under the test's tmp dir and, under CI=true,
as test-artifacts/app_browser.png.
"""

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers.runs import free_port, only_run_dir, run, write_config
from PIL import Image

from lavis_gated.app.inference import DEFAULT_MAX_LENGTH, DEFAULT_NUM_BEAMS
from lavis_gated.datasets.synthetic_artquest import generate

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
QUESTION = "What shape is in the center of the painting?"
# Hang guards, not speed checks: a busy 2-core machine can take minutes to import LAVIS and load a model.
PAGE_TIMEOUT = 600
STYLE_LINE = re.compile(r"^([1-5])\. (.+): (\d+\.\d)%$")  # "2. pop art: 12.5%"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in containers: Chromium's sandbox needs user namespaces
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1400,1700",
    "--force-device-scale-factor=1",
    # nothing beyond 127.0.0.1: no component updates, sync or metrics
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def unavailable(reason):
    """Skip, or fail under CI=true (CI installs the browser, so there its absence is a failure)."""
    message = f"{reason}; bash run_scripts/install_browser.sh installs Debian's chromium and chromedriver"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -c constraints.txt -e .[test])")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if not (binary and driver_path):
        unavailable(f"no Chromium ({binary}) or chromedriver ({driver_path}) on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # an explicit chromedriver: selenium then never runs Selenium Manager (which would download one)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, data root): the tiny model trained on 10 synthetic images per style for 6 epochs (about
    50 steps: the fewest after which it answers words rather than nothing), the lowest-loss epoch kept."""
    root = tmp_path_factory.mktemp("app_run")
    data = root / "data"
    generate(str(data), {"train": 10, "val": 2, "test": 2}, seed=3)
    config = write_config(root, data, "train", max_epoch=6, warmup_steps=1, select_by="loss")
    run(["lavis_gated/train.py", "--cfg-path", str(config)])
    return only_run_dir(root / "train") / "checkpoint_best.pth", data


@pytest.fixture(scope="module")
def app_url(trained, tmp_path_factory):
    """lavis-gated-app serving the trained checkpoint on a free 127.0.0.1 port."""
    checkpoint, _ = trained
    port = free_port()
    log = tmp_path_factory.mktemp("app_log") / "app.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "lavis_gated.app", "--checkpoint", str(checkpoint), "--port", str(port)],
            cwd=log.parent,  # no output/ here: the checkpoint must come from --checkpoint
            # this checkout's lavis_gated, whichever one the environment has installed
            env=dict(
                os.environ,
                PYTHONWARNINGS="ignore",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(server, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def wait_until_healthy(server, port, log):
    for _ in range(PAGE_TIMEOUT * 2):
        if server.poll() is not None:
            pytest.fail(f"lavis-gated-app exited with {server.returncode}:\n{log.read_text()[-5000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            pass
        try:
            server.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
    pytest.fail(f"lavis-gated-app did not answer on port {port}:\n{log.read_text()[-5000:]}")


def wait(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.2).until(lambda d: condition(d))
    except Exception:
        if IN_CI:
            save_screenshot(driver, REPO / "test-artifacts" / "app_failure.png")
        raise AssertionError(
            f"the page never showed {what}; page text:\n{page_text(driver)[-3000:]}"
        ) from None


def page_text(driver):
    return driver.execute_script("return document.body.innerText")


def find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def ask(driver, url, question, image_path=None):
    """Open a fresh page, upload image_path (if any), type the question, press Answer; returns when the
    page shows either the results or an in-page message."""
    driver.get(url)
    for part in ("input[type=file]", ".st-key-question input", "[data-testid=stFormSubmitButton] button"):
        wait(driver, lambda d, part=part: find(d, part), f"the form's {part}")
    if image_path is not None:
        find(driver, "input[type=file]")[0].send_keys(str(image_path))
        name = Path(image_path).name
        # uploaded: the chip's button turns from "Cancel upload of <name>" into "Remove <name>"
        wait(driver, lambda d: find(d, f'button[aria-label="Remove {name}"]'), f"{name} uploaded")
    if question:
        find(driver, ".st-key-question input")[0].send_keys(question)
    find(driver, "[data-testid=stFormSubmitButton] button")[0].click()
    wait(
        driver,
        lambda d: heatmap_loaded(d) or find(d, ".st-key-input-error") or find(d, "[data-testid=stException]"),
        "results or a message",
    )
    assert not find(driver, "[data-testid=stException]"), page_text(driver)


def heatmap_loaded(driver):
    return driver.execute_script(
        "const img = document.querySelector('.st-key-heatmap img');"
        "return Boolean(img && img.complete && img.naturalWidth > 0);"
    )


def save_screenshot(driver, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def direct_results(checkpoint, image_path, question):
    """What lavis_gated's model gives for this image and question, without the app: (answer with and without
    the modulation, top-5 (style, probability))."""
    from lavis.models import load_model_and_preprocess  # blip2_opt_gated: registered by lavis_gated's import

    model, vis, text = load_model_and_preprocess("blip2_opt_gated", model_type=str(checkpoint), is_eval=True)
    with Image.open(image_path) as image:
        samples = {
            "image": vis["eval"](image.convert("RGB")).unsqueeze(0),
            "text_input": [text["eval"](question)],
        }
    settings = {"num_beams": DEFAULT_NUM_BEAMS, "max_length": DEFAULT_MAX_LENGTH}
    answer = model.generate(samples, **settings)[0]
    with model.modulation_bypassed():
        unmodulated = model.generate(samples, **settings)[0]
    probabilities = model.style_probabilities(samples)[0].tolist()
    top = sorted(zip(model.vocabulary.names, probabilities), key=lambda pair: -pair[1])[:5]
    return answer, unmodulated, top


def shown(text):
    """An answer as the page writes it: whitespace collapsed, an empty one as (empty answer)."""
    return " ".join(text.split()) or "(empty answer)"


def test_uploaded_image_gets_both_answers_top_styles_and_heatmap(browser, app_url, trained, tmp_path):
    checkpoint, data = trained
    image_path = sorted((data / "images").glob("test_pop_art_*.png"))[0]

    ask(browser, app_url, QUESTION, image_path)
    screenshot = save_screenshot(browser, tmp_path / "app_browser.png")
    if IN_CI:
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        shutil.copy(screenshot, REPO / "test-artifacts" / "app_browser.png")

    assert not find(browser, ".st-key-input-error"), page_text(browser)
    answer, unmodulated, top = direct_results(checkpoint, image_path, QUESTION)
    assert answer, "the trained checkpoint answers nothing: comparing answers would prove little"
    modulated_shown = find(browser, ".st-key-answer-modulated h4")[0].text
    unmodulated_shown = find(browser, ".st-key-answer-unmodulated h4")[0].text
    assert (shown(modulated_shown), shown(unmodulated_shown)) == (shown(answer), shown(unmodulated))

    lines = find(browser, ".st-key-top-styles")[0].text.splitlines()
    styles = [STYLE_LINE.match(line).groups() for line in lines if STYLE_LINE.match(line)]
    assert [(int(rank), name) for rank, name, _ in styles] == [(i + 1, n) for i, (n, _) in enumerate(top)]
    assert [f"{percent}%" for _, _, percent in styles] == [f"{p:.1%}" for _, p in top]

    size = browser.execute_script(
        "const img = document.querySelector('.st-key-heatmap img');"
        "return [img.naturalWidth, img.naturalHeight];"
    )
    assert size[0] > 300 and size[1] > 200, size
    assert "test images asked the same question" in find(browser, ".st-key-heatmap")[0].text


@pytest.mark.parametrize(
    "case, message",
    [
        ("no image", "No image: upload one or pick a demo test image."),
        ("not an image", "notes.png is not an image"),
        ("empty question", "The question is empty"),
        ("oversized image", "the limit is 8000 pixels a side"),
    ],
)
def test_bad_input_gets_a_message_in_the_page(browser, app_url, trained, tmp_path, case, message):
    _, data = trained
    image_path, question = sorted((data / "images").glob("test_*.png"))[0], QUESTION
    if case == "no image":
        image_path = None
    elif case == "not an image":
        image_path = tmp_path / "notes.png"
        image_path.write_text("a shopping list, not a picture")
    elif case == "empty question":
        question = ""
    elif case == "oversized image":
        image_path = tmp_path / "panorama.png"
        Image.new("RGB", (8001, 8), "white").save(image_path)

    ask(browser, app_url, question, image_path)

    errors = find(browser, ".st-key-input-error [data-testid=stAlertContentError]")
    assert errors and message in errors[0].text, page_text(browser)
    assert not find(browser, ".st-key-heatmap"), "results shown for bad input"
    assert "Traceback" not in page_text(browser)
