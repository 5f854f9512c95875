"""A real-browser check of ``tlrun ui``: headless Chromium opens the MLflow UI on a store holding a real sweep, the
experiment's runs table shows the sweep's parent run, and expanding it shows its two jobs nested under it; ticked in
the table's "Columns" selector (tlrun's view leaves them out), MLflow's Source column shows each run's
``mlflow.source.name`` and its Dataset column each job's dataset inputs (name, digest, context); the run page of the
parent lists its child runs. A screenshot of the runs table, parent expanded, Source and Dataset shown, is kept at
``outputs/test-artifacts/ui_sweep.png`` (git-ignored).

Chromium is not a project dependency: the test skips without a ``chromium`` / ``chromium-browser`` executable
(Debian/Ubuntu: ``apt-get install -y chromium``). The browser is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages ending in a NUL byte on file descriptors 3 and 4), so no Python package is
needed beyond the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_SOURCE_NAME

from tests.helpers import REPO, free_port, processes_mentioning, wait_for_ui

ARTIFACT = REPO / "outputs" / "test-artifacts" / "ui_sweep.png"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--no-default-browser-check", "--disable-extensions", "--mute-audio", "--window-size=1400,900"]
CLI = [sys.executable, "-c", "import sys; sys.argv=['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"]
#: ``tlrun ui`` with Ctrl-C's usual meaning even when pytest runs in the background (where SIGINT is ignored).
UI_CLI = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv=['tlrun', *sys.argv[1:]]; from tlrun.cli import main; main()"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = [
    pytest.mark.skipif(_chromium() is None,
                       reason="needs headless Chromium, not installed: apt-get install -y chromium"),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftover processes through /proc"),
]


class DevTools:
    """A minimal DevTools-protocol client over Chromium's ``--remote-debugging-pipe`` (fd 3: to the browser, fd 4:
    from it)."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self.to_browser, self.from_browser = to_browser, from_browser
        self.ids = itertools.count(1)
        self.buffer = b""

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        """Send a command and return its result (events read meanwhile are dropped)."""
        number = next(self.ids)
        command = {"id": number, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self.to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60, what: str = "") -> object:
        """Poll a JavaScript expression until it is truthy; on timeout, fail with the page's text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.5)
        text = self.evaluate(session, "document.body ? document.body.innerText : ''")
        raise AssertionError(f"the page did not show {what or expression} within {timeout} s; it shows:\n{text[:3000]}")


def _start_chromium(home: Path) -> tuple[subprocess.Popen, DevTools]:
    """Headless Chromium in its own process group, its DevTools pipe on fds 3 and 4 (placed by a small trampoline).

    Everything it writes stays under ``home``: its profile, and (through ``XDG_CONFIG_HOME``) the database of its
    crash handlers, which start in sessions of their own, so that their command lines name ``home`` too."""
    to_read, to_write = os.pipe()  # we write, Chromium reads (its fd 3)
    from_read, from_write = os.pipe()  # Chromium writes (its fd 4), we read
    trampoline = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                  "os.execv(sys.argv[3], sys.argv[3:])")
    command = [sys.executable, "-c", trampoline, str(to_read), str(from_write), _chromium(), *CHROMIUM_FLAGS,
               "--remote-debugging-pipe", f"--user-data-dir={home / 'profile'}", "about:blank"]
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache")}
    browser = subprocess.Popen(command, pass_fds=(to_read, from_write), start_new_session=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_read)
    os.close(from_write)
    return browser, DevTools(to_write, from_read)


def _stop_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL, to the process group ``process`` leads."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    process.poll()


def _live_members_of_group(pgid: int) -> list[int]:
    """PIDs of the processes, zombies aside, in process group ``pgid`` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _click(devtools: DevTools, page: str, element: str) -> None:
    """A left click (real mouse events) in the middle of the element the JavaScript expression ``element`` gives."""
    x, y = devtools.evaluate(page, f"""(() => {{
        const r = ({element}).getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2];
    }})()""")
    mouse = "Input.dispatchMouseEvent"
    devtools.call(mouse, {"type": "mouseMoved", "x": x, "y": y}, page)
    for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
        devtools.call(mouse, {"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1},
                      page)


def _show_columns(devtools: DevTools, page: str, titles: list[str]) -> None:
    """Show the runs table's columns ``titles`` as a user does: open "Columns", tick each one's box, press Escape."""
    selector = '[data-component-id="mlflow.experiment_page.runs_table.column_selector"]'
    _click(devtools, page, "[...document.querySelectorAll('button')].find(button => button.innerText == 'Columns')")
    for title in titles:
        node = f"document.querySelector('{selector} [title=\"{title}\"]')?.closest('[class*=\"-treenode\"]')"
        devtools.wait_for(page, f"!!{node}", timeout=15, what=f"{title!r} in the column selector")
        _click(devtools, page, f"{node}.querySelector('[class*=\"-tree-checkbox\"]')")
        devtools.wait_for(page, f"{node}.className.includes('checkbox-checked')", timeout=15,
                          what=f"{title!r} ticked in the column selector")
    for kind in ("keyDown", "keyUp"):
        devtools.call("Input.dispatchKeyEvent", {"type": kind, "key": "Escape", "code": "Escape",
                                                 "windowsVirtualKeyCode": 27}, page)
    headers = "[...document.querySelectorAll('.ag-header-cell')].map(cell => cell.innerText)"
    devtools.wait_for(page, f"!document.querySelector('{selector}') && {json.dumps(titles)}.every("
                            f"title => {headers}.includes(title))", timeout=15, what=f"the columns {titles}")


def _widen_run_name_column(devtools: DevTools, page: str, pixels: int) -> None:
    """Drag the run-name column's resize handle ``pixels`` to the right (real mouse events; nothing if not found)."""
    box = devtools.evaluate(page, """(() => {
        const handle = document.querySelector('.ag-header-cell[col-id="attributes.`Run Name`"] .ag-header-cell-resize');
        if (!handle) return null;
        const r = handle.getBoundingClientRect(), y = r.y + r.height / 2;
        for (let x = r.left; x < r.right; x += 1) {  // a point where the handle is on top (the next header overlaps it)
            if (document.elementFromPoint(x, y) === handle) return [x, y];
        }
        return null;
    })()""")
    if not box:
        return
    (x, y), mouse = box, "Input.dispatchMouseEvent"
    devtools.call(mouse, {"type": "mouseMoved", "x": x, "y": y}, page)
    held = {"button": "left", "buttons": 1}
    devtools.call(mouse, {"type": "mousePressed", "x": x, "y": y, "clickCount": 1, **held}, page)
    for step in range(1, 11):
        devtools.call(mouse, {"type": "mouseMoved", "x": x + pixels * step / 10, "y": y, **held}, page)
    devtools.call(mouse, {"type": "mouseReleased", "x": x + pixels, "y": y, "button": "left", "buttons": 0,
                          "clickCount": 1}, page)


def _run_sweep(tmp_path: Path, tracking_uri: str, env: dict) -> None:
    command = [*CLI, "--multirun", "method=no_adaptation,coral", "logger.experiment=browser-sweep",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**env, "MLFLOW_TRACKING_URI": tracking_uri})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def test_browser_shows_sweep_parent_with_its_children(tmp_path):
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    _run_sweep(tmp_path, tracking_uri, env)
    print(f"sweep: {time.monotonic() - started:.1f} s")

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name("browser-sweep").experiment_id
    runs = client.search_runs([experiment_id])
    parents = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1 and len(runs) == 3, [(run.info.run_name, run.data.tags) for run in runs]
    parent = parents[0]
    children = {run.info.run_id: run.info.run_name for run in runs if run is not parent}
    assert all(run.data.tags.get("mlflow.parentRunId") == parent.info.run_id for run in runs if run is not parent)
    assert sorted(children.values()) == ["coral original->thick", "no_adaptation original->thick"]
    assert parent.info.run_name.startswith("sweep ")

    port = free_port()
    chromium_home = tmp_path / "chromium"
    ui = subprocess.Popen([*UI_CLI, "ui", f"tracking_uri={tracking_uri}", f"port={port}"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    browser = devtools = None
    try:
        output = wait_for_ui(ui, port) + ui.stdout.readline()
        print(f"UI answering: {time.monotonic() - started:.1f} s")
        printed = re.search(r"tlrun: runs of experiment 'browser-sweep': (\S+)", output)
        assert printed, output[-3000:]
        browser, devtools = _start_chromium(chromium_home)
        target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        page = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        devtools.call("Emulation.setDeviceMetricsOverride",
                      {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}, page)

        # What a newcomer sees at the address tlrun ui printed: the experiment's runs table (``#/experiments/<id>``
        # alone opens MLflow 3's GenAI overview: "Traces 0, No data available") with target_acc and tlrun's tags.
        base = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}"
        assert printed.group(1).startswith(f"{base}/runs?")
        devtools.call("Page.navigate", {"url": printed.group(1)}, page)
        parent_row = f'document.querySelector(\'.ag-pinned-left-cols-container [row-id="{parent.info.run_id}"]\')'
        devtools.wait_for(page, f"{parent_row} && {parent_row}.innerText.includes({json.dumps(parent.info.run_name)})",
                          what=f"the parent run {parent.info.run_name!r} in the runs table")
        # Collapsed: the children are in the store's 3 runs but not in the table.
        assert devtools.evaluate(page, "document.body.innerText.includes('3 matching runs')")
        headers = devtools.evaluate(page, "[...document.querySelectorAll('.ag-header-cell')].map(cell => cell.innerText)")
        assert {"Run Name", "target_acc", "method", "dataset"} <= set(headers), headers
        assert not devtools.evaluate(page, "document.body.innerText.includes('No data available')")
        for name in children.values():
            assert not devtools.evaluate(page, f"document.body.innerText.includes({json.dumps(name)})"), name

        # Room for the table in the picture: close the MLflow Assistant side panel when it is open (best effort).
        close_assistant = '[data-component-id="mlflow.assistant.chat_panel.close"]'
        devtools.evaluate(page, f"document.querySelector({json.dumps(close_assistant)})?.click()")
        # Expand the parent: its row's expander button (in the run-name cell).
        clicked = devtools.evaluate(page, f"""(() => {{
            const row = {parent_row};
            const button = row.querySelector('button[data-component-id*="runnamecellrenderer"]')
                || row.querySelector('[col-id="attributes.`Run Name`"] button');
            if (!button) return false;
            button.click();
            return true;
        }})()""")
        assert clicked, "no expander button in the parent's row"
        rows = devtools.wait_for(page, """(() => {
            const rows = [...document.querySelectorAll('.ag-pinned-left-cols-container [role="row"][row-id]')];
            if (rows.length < 3) return null;
            return rows.map(row => [Number(row.getAttribute('row-index')), row.getAttribute('row-id'), row.innerText]);
        })()""", what="the parent's two child runs after expanding it")
        rows = sorted(rows)
        print("runs table rows (row-index, run id, text):", *rows, sep="\n  ")
        assert [row_id for _, row_id, _ in rows][0] == parent.info.run_id  # the parent first ...
        assert {row_id for _, row_id, _ in rows[1:]} == set(children)  # ... its two children right below it
        for _, row_id, text in rows[1:]:
            assert children[row_id] in text
        for name in children.values():
            assert devtools.evaluate(page, f"document.body.innerText.includes({json.dumps(name)})"), name

        # MLflow's Source column (the run's ``mlflow.source.name``) and Dataset column (its dataset inputs: name,
        # digest and context), which tlrun's view does not show: a user ticks them in "Columns".
        _show_columns(devtools, page, ["Source", "Dataset"])
        cells = devtools.evaluate(page, """Object.fromEntries(
            [...document.querySelectorAll('.ag-center-cols-container [role="row"][row-id]')].map(row => [
                row.getAttribute('row-id'),
                ['Source', 'Dataset'].map(title => row.querySelector('[col-id="attributes.`' + title + '`"]'))
                    .map(cell => cell?.innerText)
            ]))""")
        print("Source and Dataset cells by run id:", *cells.items(), sep="\n  ")
        assert set(cells) == {run.info.run_id for run in runs}, cells
        for run in runs:
            source, datasets = cells[run.info.run_id]
            assert run.data.tags[MLFLOW_SOURCE_NAME] in source, (run.info.run_name, source)
            for item in run.inputs.dataset_inputs:
                context = next(tag.value for tag in item.tags if tag.key == MLFLOW_DATASET_CONTEXT)
                shown = re.escape(f"{item.dataset.name} ({item.dataset.digest})") + r"\s*" + context
                assert re.search(shown, datasets, re.IGNORECASE), (run.info.run_name, shown, datasets)
        assert {run.data.tags[MLFLOW_SOURCE_NAME] for run in runs} == {"tlrun"}
        assert [sorted(item.dataset.name for item in run.inputs.dataset_inputs) for run in runs if run is not parent] \
            == [["digits/original", "digits/thick"]] * 2

        _widen_run_name_column(devtools, page, 100)  # whole run names in the picture (best effort)
        time.sleep(1)  # let the expanded table settle before the picture
        png = base64.b64decode(devtools.call("Page.captureScreenshot", {"format": "png"}, page)["data"])
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_bytes(png)
        print(f"screenshot of the runs table, parent expanded, Source and Dataset shown: {ARTIFACT}")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, len(png)

        # The parent's run page lists its child runs.
        devtools.call("Page.navigate", {"url": f"{base}/runs/{parent.info.run_id}"}, page)
        names = json.dumps(sorted(children.values()))
        devtools.wait_for(page, f"""(() => {{
            const text = document.body.innerText;
            const at = text.indexOf('Child runs');
            return at >= 0 && {names}.every(name => text.slice(at, at + 500).includes(name));
        }})()""", what="the parent run page's 'Child runs' with both jobs")

        print(f"browser checks done: {time.monotonic() - started:.1f} s")
        running = processes_mentioning(str(chromium_home))
        assert running  # what the leftover check below looks for
        handlers = set(running) & set(processes_mentioning("chrome_crashpad_handler"))
        print(f"Chromium processes: {len(running)}, crash handlers among them: {len(handlers)}")
        devtools.call("Browser.close")
        browser.wait(timeout=30)
    finally:
        if browser is not None:
            _stop_group(browser)
            os.close(devtools.to_browser)
            os.close(devtools.from_browser)
        ui.send_signal(signal.SIGINT)  # Ctrl-C: tlrun ui stops its server's process group
        try:
            returncode = ui.wait(timeout=60)
        except subprocess.TimeoutExpired:  # leave nothing behind, then fail
            for pid in processes_mentioning(f"--port {port}"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            ui.kill()
            raise
    assert returncode == 0
    time.sleep(1)
    assert processes_mentioning(f"--port {port}") == []  # the UI server and its worker
    assert processes_mentioning(str(chromium_home)) == []  # Chromium's processes and its crash handlers
    assert browser is None or _live_members_of_group(browser.pid) == []
