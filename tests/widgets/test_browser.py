"""ncd.Studio in a real browser: JupyterLab serves a notebook that opens the transformer block,
headless Chromium (driven by Playwright) runs the cell, sees the editor and its diagram, and
clicks one of its buttons; the kernel's answer must come back into the page.

What the Python-side widget tests cannot see: that the widget state reaches the front end,
that the diagram is drawn there, and that a click travels to the kernel and back.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
TOKEN = "ncd-browser-test"
CELL = 'import ncd\nstudio = ncd.Studio("transformer_block")\nstudio'


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # the set-up installs it (scripts/system-deps.sh): say so, do not skip
        pytest.fail("Chromium not found: run `make system` (apt-get install chromium) first")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, rooted in a folder holding one notebook."""
    root = tmp_path_factory.mktemp("lab")
    nb = {
        "cells": [{"cell_type": "code", "metadata": {}, "source": CELL, "outputs": [],
                   "execution_count": None}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    (root / "studio.ipynb").write_text(json.dumps(nb))
    port = _free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".config"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"))  # fmt: skip
    log = open(root / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
         f"--port={port}", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (root / "server.log").read_text())
                time.sleep(0.5)
        yield url, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_studio_renders_and_answers_a_click(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="dev dependency")
    from ncd import gallery

    url, root = lab
    boxes = gallery.get("transformer_block").boxes
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            try:
                _drive(page, url, boxes)
            except Exception as err:  # say what the page showed, not only that it timed out
                page.screenshot(path=str(root / "failed.png"))
                shown = page.inner_text("body")[-3000:]
                log = (root / "server.log").read_text()[-3000:]
                raise AssertionError(
                    f"{err}\n--- page ---\n{shown}\n--- server ---\n{log}"
                ) from err
            page.screenshot(path=str(root / "studio.png"))
        finally:
            browser.close()
    assert Path(root / "studio.png").stat().st_size > 10_000


def _drive(page, url, boxes):
    """Open the notebook, run its cell, check the editor, type and click in it."""
    page.goto(f"{url}/lab/tree/studio.ipynb?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
    # Wait until the kernel says it is idle, then run the cell (Ctrl+Enter: run, stay). A run
    # asked for while the front end is still connecting can be dropped on a busy machine:
    # ask again until the cell's prompt shows it started.
    page.wait_for_selector(".jp-StatusBar-Widget :text('Idle')")
    started = ".jp-Cell .jp-InputPrompt:has-text('[1]'), .jp-Cell .jp-InputPrompt:has-text('[*]')"
    for attempt in range(6):
        page.click(".jp-Notebook .jp-Cell .cm-content")
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_selector(started, timeout=10_000)
            break
        except Exception:
            if attempt == 5:
                raise
    add = page.wait_for_selector("button:has-text('add box')")
    assert add.is_visible()
    # The diagram: the renderer's SVG, with the block's boxes drawn in the page.
    page.wait_for_selector(".jp-OutputArea-output svg g.node")
    nodes = page.locator(".jp-OutputArea-output svg g.node").count()
    assert nodes >= len(boxes)
    # Typing sizes goes to the kernel; the cost table comes back priced at them.
    page.fill("input[placeholder='B=2,T=128']", "B=4,T=256")
    page.wait_for_selector(".jp-OutputArea-output :text(\"'T': 256\")")
    # A button press with nothing chosen: the kernel's located error comes back.
    page.click("button:has-text('delete box')")
    page.wait_for_selector(".jp-OutputArea-output :text('no box selected')")
    # Choose a box in the front end, press again: the kernel acts on that box.
    name = boxes[1].name
    page.select_option(".widget-dropdown:has(label:text-is('box')) select", name)
    page.click("button:has-text('delete box')")
    # (deleting it would leave its readers unwired: refused, with the reason)
    page.wait_for_selector(f".jp-OutputArea-output :text('edit not taken (deleted {name})')")
    page.wait_for_selector(f".jp-OutputArea-output :text(\"found '{name}'\")")
