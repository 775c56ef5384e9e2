"""The demo Space in a real browser: headless Debian Chromium driven by Selenium through Debian's
chromedriver (nothing is downloaded at run time). Picks a held-out test problem, asks every
student, waits for all panels to finish streaming, saves a screenshot (also to
$COT_FACTORY_SCREENSHOT_DIR when set), and checks one panel per student with the right marks.

Needs the Debian packages `chromium` and `chromium-driver` and the PyPI package `selenium`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_space_app import TEST_PROBLEMS, TRAIN_PROBLEM, make_space, start_space

from factory.answers import extract_answer, is_correct

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2000",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
        "apt-get install -y chromium chromium-driver",
    ),
]
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs the PyPI package selenium: pip install selenium"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model_dir):
    return make_space(tmp_path_factory.mktemp("space"), tiny_model_dir)


@pytest.fixture(scope="module")
def url(space):
    handle = start_space(space.folder)
    yield handle.url
    handle.stop()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options
    )
    yield driver
    driver.quit()


def pick(driver, wait, problem_id: str) -> None:
    """Choose a problem in the dataset picker: type its id, click the option that matches."""
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#picker input"))
    box.click()
    box.send_keys(f"· {problem_id} ·")
    wait.until(lambda d: option(d, f"· {problem_id} ·")).click()


def option(driver, text: str):
    """The picker's open option containing `text`, or None."""
    options = driver.find_elements(By.CSS_SELECTOR, "#picker li")
    return next((o for o in options if text in o.text), None)


def value(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).get_attribute("value") or ""


def answer_lines(driver, n: int) -> list[str]:
    """Each panel's answer line as shown, whitespace collapsed (code spans break lines)."""
    lines = [driver.find_element(By.ID, f"student-{i}-answer").text for i in range(n)]
    return [" ".join(line.split()) for line in lines]


def save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("COT_FACTORY_SCREENSHOT_DIR"):
        out = Path(os.environ["COT_FACTORY_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / name)
    return path


def test_pick_a_test_problem_and_compare_every_student(space, url, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(url)
    problem = TEST_PROBLEMS[0]
    pick(browser, wait, problem["id"])
    wait.until(lambda d: value(d, "#question textarea") == problem["question"])
    assert "No teacher CoT" in browser.find_element(By.ID, "cot-note").text

    browser.find_element(By.ID, "submit").click()
    n, gold = len(space.labels), space.golds[problem["id"]]
    done = lambda d: all("Answer:" in a and "generating" not in a for a in answer_lines(d, n))  # noqa: E731
    wait.until(done)
    shot = save_screenshot(browser, tmp_path, "space-test-problem.png")
    assert shot.stat().st_size > 10_000

    panels = browser.find_elements(By.CSS_SELECTOR, ".student")
    assert len(panels) == n and all(panel.is_displayed() for panel in panels)
    lines = answer_lines(browser, n)
    for i, expected in enumerate(space.expected[problem["question"]]):
        assert space.labels[i] in panels[i].text
        assert value(browser, f"#student-{i}-text textarea") == expected
        correct = is_correct(extract_answer(expected, "math"), gold, "math")
        assert ("✅ right" if correct else "❌ wrong") in lines[i] and f"gold {gold}" in lines[i]
    assert any("✅" in line for line in lines)  # the gold is what one student answers


def test_pick_a_train_problem_shows_the_teacher_cot(space, url, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(url)
    pick(browser, wait, TRAIN_PROBLEM["id"])
    wait.until(lambda d: value(d, "#question textarea") == TRAIN_PROBLEM["question"])
    table = wait.until(lambda d: d.find_element(By.ID, "teacher-cots"))
    wait.until(lambda d: "cot-L1" in table.text)
    assert "tiny-teacher" in table.text and "9 - 2 = 7" in table.text
    assert "1 teacher CoT" in browser.find_element(By.ID, "cot-note").text
    save_screenshot(browser, tmp_path, "space-train-problem.png")
