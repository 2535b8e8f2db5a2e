"""The notebooks' widgets in a real browser: JupyterLab in headless Chromium, driven by Playwright.

Run by ``make test-browser`` (not by ``make test``: the file name does not match ``test_*.py``,
so pytest collects it only when named). For every notebook of ``BROWSER_NOTEBOOKS``:

1. open it in JupyterLab and run all cells (the Run menu), wait until every cell has run;
2. find each explorer (an ipywidgets box holding an ``Output`` with an image) and change
   each kind of control it has at least once: a slider with the keyboard, a dropdown by
   selecting another option, a number box by typing;
3. after each change, wait for the figure to be replaced and check that the screenshot of
   the figure changed (Pillow pixel difference) and that no output shows a traceback;
4. record the redraw time, measured in the page: from the event that changes the control
   (a key on it, or its change event) to the new image in the widget's output; fail if one
   exceeds ``BROWSER_REDRAW_BUDGET_MS`` (default 1500, a regression guard for busy
   machines; 300 is the course's target on an idle 2-core CPU).

Screenshots go to ``runs/browser/<notebook>-w<k>-before.png`` / ``-after.png`` (before the
first change, after the last), the times to ``runs/browser/timings.json``.

Environment: ``BROWSER_NOTEBOOKS`` (space-separated notebook names in ``notebooks/``; the
default lists every notebook with a widget), ``CHROMIUM`` (the browser binary; default:
``chromium`` on the PATH, Debian's package). Playwright's own browser download needs the
internet, so the Debian browser is used through ``executable_path``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
OUT = ROOT / "runs" / "browser"
DEFAULT_NOTEBOOKS = (
    "01_lif_neuron.ipynb 02_spike_encoding.ipynb 03_surrogate_gradients.ipynb 05_pyramid_encoder_decoder.ipynb "
    "06_voc_localization.ipynb 07_snn_vs_ann.ipynb"
)
NOTEBOOKS = os.environ.get("BROWSER_NOTEBOOKS", DEFAULT_NOTEBOOKS).split()
RUN_TIMEOUT_S = float(os.environ.get("BROWSER_RUN_TIMEOUT", "420"))  # one notebook's Run All
REDRAW_TIMEOUT_S = 30.0
# The course's target is 300 ms per redraw on an idle 2-core CPU; the default here guards
# against regressions on a busy machine. BROWSER_REDRAW_BUDGET_MS=300 checks the target.
REDRAW_BUDGET_MS = float(os.environ.get("BROWSER_REDRAW_BUDGET_MS", "1500"))
TRACEBACK = re.compile(r"Traceback|Error:|Exception")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium found: install Debian's chromium (apt-get install chromium) or set CHROMIUM")
    return path


@contextlib.contextmanager
def jupyter_lab() -> Iterator[tuple[str, str]]:
    """A JupyterLab of the project's venv on a free loopback port, with a token and throwaway settings."""
    port, token = _free_port(), secrets.token_hex(16)
    scratch = Path(tempfile.mkdtemp(prefix="spikelib-lab-"))
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
        f"--LabApp.app_settings_dir={ROOT / 'jupyter' / 'lab-settings'}",
        f"--LabApp.user_settings_dir={scratch / 'user-settings'}",
        f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    # no autosave: running the notebooks here must not rewrite them
    docmanager = scratch / "user-settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    # every cell in the page, not only those scrolled into view
    tracker = scratch / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(scratch / "config"), "JUPYTER_RUNTIME_DIR": str(scratch / "rt")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    log = open(scratch / "lab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = (scratch / "lab.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start: {tail}") from None
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def lab():
    with jupyter_lab() as url_token:
        yield url_token


@pytest.fixture(scope="module")
def page(lab):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def _png(locator: Locator) -> Image.Image:
    return Image.open(io.BytesIO(locator.screenshot())).convert("RGB")


def _changed_share(before: Image.Image, after: Image.Image) -> float:
    """Share of pixels that differ (0 when the pictures are the same)."""
    if before.size != after.size:
        return 1.0
    diff = ImageChops.difference(before, after).convert("L").point(lambda v: 255 if v > 16 else 0)
    return diff.histogram()[255] / (before.size[0] * before.size[1])


def _errors(page: Page) -> list[str]:
    texts = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], '
        ".jp-OutputArea-output.jp-mod-error, "
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'
    ).all_inner_texts()
    return [text[:500] for text in texts if TRACEBACK.search(text)]


KERNEL_IDLE = re.compile(r"\| Idle$")
ALL_RUN = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p));
}"""


def _prompts(page: Page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)")


def _run_all(page: Page, url: str, token: str, notebook: str) -> float:
    stem = Path(notebook).stem
    page.goto(f"{url}/lab/tree/{notebook}?reset&token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    try:  # the kernel has started: the status bar says "Python 3 (ipykernel) | Idle"
        page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).first.wait_for(timeout=120_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(OUT / f"{stem}-failure.png"))
        pytest.fail(f"{notebook}: the kernel did not start within 120 s (see {stem}-failure.png)")
    news = page.get_by_text("official Jupyter news")
    assert news.count() == 0, "JupyterLab asks about news: the project's settings override did not apply"
    start = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    try:  # every code cell has run once its prompt holds a number (none waits with [*] or [ ])
        page.wait_for_function(ALL_RUN, timeout=RUN_TIMEOUT_S * 1000, polling=500)
        page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).first.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(OUT / f"{stem}-failure.png"))
        pytest.fail(f"{notebook}: not every cell ran within {RUN_TIMEOUT_S:.0f} s; prompts {_prompts(page)}")
    return time.perf_counter() - start


def _image_src(output: Locator) -> str:
    return output.evaluate("el => { const img = el.querySelector('img'); return img ? img.src : ''; }")


def _change(page: Page, control: Locator, kind: str) -> str:
    """Change one control as a user would; return what was done."""
    if kind == "slider":
        handle = control.locator(".noUi-handle").first
        handle.focus()
        key = (
            "ArrowLeft"
            if handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            else "ArrowRight"
        )
        handle.press(key)
        return f"slider {key}"
    if kind == "dropdown":
        select = control.locator("select").first
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("el => el.selectedIndex")
        select.select_option(index=(current + 1) % len(options))
        return f"dropdown -> {options[(current + 1) % len(options)]}"
    field = control.locator("input").first
    value = int(field.input_value())
    field.fill(str(value + 1))
    field.press("Tab")  # a number box sends its value when it loses focus
    return f"number {value} -> {value + 1}"


# In the page: from the event that changes the control (a key pressed on it, or its change
# event) to the new figure's <img> in the widget's output.
WATCH_REDRAW = """box => {
    const output = box.querySelector(':scope > .widget-output');
    const img = output.querySelector('img');
    const old = img ? img.src : '';
    const watch = window.spikelibRedraw = {start: null, end: null};
    const mark = () => { if (watch.start === null) watch.start = performance.now(); };
    for (const type of ['keydown', 'change']) box.addEventListener(type, mark, {capture: true, once: true});
    const observer = new MutationObserver(() => {
        const now = output.querySelector('img');
        if (watch.start !== null && now && now.src !== old) {
            watch.end = performance.now();
            observer.disconnect();
        }
    });
    observer.observe(output, {subtree: true, childList: true, attributes: true});
}"""
NEW_IMAGE = "([el, old]) => { const img = el.querySelector('img'); return img && img.src !== old && img.complete; }"
# Dropdowns last: a dropdown may switch to a setting that another control does not affect
# (EncodingExplorer's seed does nothing to the latency code).
CONTROL_KINDS = {
    "number": ".widget-inline-hbox.widget-text",
    "slider": ".widget-slider",
    "dropdown": ".widget-dropdown",
}


def _explore(page: Page, stem: str) -> list[dict]:
    """Drive every explorer of the open notebook; return one record per control change."""
    outputs = page.locator(".jupyter-widgets.widget-vbox:has(> .widget-output)")
    try:
        outputs.first.wait_for(state="attached", timeout=60_000)
    except PlaywrightTimeout:
        pass  # counted below
    count = outputs.count()
    assert count > 0, f"{stem}: no explorer found after running the notebook"
    records = []
    for k in range(count):
        box = outputs.nth(k)
        box.scroll_into_view_if_needed()
        output = box.locator(":scope > .widget-output")
        page.wait_for_function("el => !!el.querySelector('img')", arg=output.element_handle(), timeout=30_000)
        first = _png(output)
        first.save(OUT / f"{stem}-w{k + 1}-before.png")
        before = first
        for kind, selector in CONTROL_KINDS.items():
            controls = box.locator(selector)
            if controls.count() == 0:
                continue
            control = controls.first
            old = _image_src(output)
            box.evaluate(WATCH_REDRAW)
            start = time.perf_counter()
            action = _change(page, control, kind)
            try:
                page.wait_for_function(
                    NEW_IMAGE,
                    arg=[output.element_handle(), old],
                    timeout=REDRAW_TIMEOUT_S * 1000,
                    polling="raf",
                )
            except PlaywrightTimeout:
                pytest.fail(f"{stem} widget {k + 1}: no new figure {REDRAW_TIMEOUT_S:.0f} s after {action}")
            seconds = time.perf_counter() - start
            page.wait_for_function("() => window.spikelibRedraw.end !== null", timeout=5_000)
            in_page = page.evaluate("() => window.spikelibRedraw.end - window.spikelibRedraw.start")
            after = _png(output)
            share = _changed_share(before, after)
            records.append(
                {
                    "notebook": stem,
                    "widget": k + 1,
                    "control": kind,
                    "action": action,
                    "redraw_ms": round(in_page),
                    "redraw_ms_seen_by_playwright": round(1000 * seconds),
                }
            )
            records[-1]["changed_pixels"] = round(share, 4)
            assert share > 0.001, f"{stem} widget {k + 1}: the figure did not change after {action}"
            before = after
        assert _errors(page) == [], f"{stem}: errors after using widget {k + 1}: {_errors(page)}"
        before.save(OUT / f"{stem}-w{k + 1}-after.png")
    return records


def test_widgets_redraw_in_the_browser(page, lab):
    url, token = lab
    OUT.mkdir(parents=True, exist_ok=True)
    timings: dict[str, object] = {"notebooks": {}, "changes": []}
    for notebook in NOTEBOOKS:
        if not (NOTEBOOKS_DIR / notebook).is_file():
            pytest.fail(f"no notebook {notebook} in {NOTEBOOKS_DIR} (BROWSER_NOTEBOOKS)")
        stem = Path(notebook).stem
        run_seconds = _run_all(page, url, token, notebook)
        errors = _errors(page)
        assert errors == [], f"{notebook}: errors while running: {errors}"
        records = _explore(page, stem)
        timings["notebooks"][stem] = {"run_all_s": round(run_seconds, 1)}  # type: ignore[index]
        timings["changes"].extend(records)  # type: ignore[attr-defined]
        page.screenshot(path=str(OUT / f"{stem}-page.png"))
    (OUT / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    for record in timings["changes"]:  # type: ignore[attr-defined]
        print(record)
    slow = [r for r in timings["changes"] if r["redraw_ms"] > REDRAW_BUDGET_MS]  # type: ignore[attr-defined]
    assert not slow, f"redraws over {REDRAW_BUDGET_MS:.0f} ms: {slow}"
