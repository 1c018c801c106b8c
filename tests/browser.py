"""Open a built book page in headless Chromium and report what a reader would see.

Chromium's own headless mode (``--dump-dom``) runs the page's scripts and prints the DOM they
leave. To see console errors and image sizes as well, the page is copied beside itself with a
small probe script first in ``<head>``: it records ``console.error`` calls, uncaught exceptions,
rejected promises and resources that failed to load, waits for MathJax to finish typesetting and
for the widget views to render, and then writes what it saw, with every image's natural size and
the number of widget views the page holds and of widgets rendered, into ``<pre id="uex-report">``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

PROBE = """<script>
(function () {
  var seen = [];
  var error = console.error.bind(console);
  console.error = function () { seen.push("console.error: " + Array.prototype.join.call(arguments, " ")); error.apply(null, arguments); };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) { seen.push("failed to load: " + (t.src || t.href)); }
    else { seen.push("exception: " + e.message + " @ " + e.filename + ":" + e.lineno); }
  }, true);
  window.addEventListener("unhandledrejection", function (e) { seen.push("rejection: " + e.reason); });
  function report() {
    var out = document.createElement("pre");
    out.id = "uex-report";
    var images = Array.prototype.map.call(document.images, function (i) {
      return {src: i.getAttribute("src"), width: i.naturalWidth, height: i.naturalHeight}; });
    var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
    var widgets = document.querySelectorAll(".jupyter-widgets").length;
    var broken = Array.prototype.filter.call(document.querySelectorAll(".jupyter-widgets"), function (e) {
      return /Error displaying widget/.test(e.textContent); }).length;
    out.textContent = JSON.stringify({errors: seen, images: images, mathjax: !!window.MathJax,
                                      widget_views: views, widgets: widgets, broken_widgets: broken});
    document.body.appendChild(out);
  }
  // The widget JavaScript renders its views asynchronously after "load": wait (in Chromium's
  // virtual time) until there are at least as many rendered widgets as views, or 10 s.
  function settled(waited) {
    var views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
    if (document.querySelectorAll(".jupyter-widgets").length >= views || waited >= 10000) { setTimeout(report, 200); }
    else { setTimeout(function () { settled(waited + 100); }, 100); }
  }
  window.addEventListener("load", function () {
    var typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
    (typeset || Promise.resolve()).then(function () { settled(0); },
                                        function (e) { seen.push("mathjax: " + e); report(); });
  });
})();
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(page: Path, browser: str, budget_ms: int = 20000) -> str:
    """The DOM of ``page`` after its scripts ran, with the probe's report in it."""
    text = page.read_text()
    head = text.find("<head>")
    probed = page.with_name(f".uex-probe-{page.name}")
    probed.write_text(text[:head + 6] + PROBE + text[head + 6:] if head >= 0 else PROBE + text)
    try:
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                                 f"--virtual-time-budget={budget_ms}", "--dump-dom", probed.as_uri()],
                                capture_output=True, text=True, timeout=120)
    finally:
        probed.unlink()
    return result.stdout


class _Reader(HTMLParser):
    """Collects the probe's report, the tables' row counts and the text outside code and math."""

    SKIP = {"script", "style", "pre", "code", "mjx-container", "textarea"}

    def __init__(self):
        super().__init__()
        self.report, self.tables, self.text = None, [], []
        self._stack, self._in_report, self._report_text = [], False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "pre" and attrs.get("id") == "uex-report":
            self._in_report = True
        if tag == "table":
            self.tables.append(0)
        if tag == "tr" and self.tables and "tbody" in self._stack:
            self.tables[-1] += 1
        self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag == "pre" and self._in_report:
            self._in_report = False
            self.report = json.loads("".join(self._report_text))

    def handle_data(self, data):
        if self._in_report:
            self._report_text.append(data)
        elif not any(tag in self.SKIP or tag.startswith("mjx-") for tag in self._stack):
            self.text.append(data)


def inspect(page: Path, browser: str) -> dict:
    """What a reader sees on ``page``: errors, images (natural sizes), table row counts, raw math left."""
    reader = _Reader()
    reader.feed(render(page, browser))
    if reader.report is None:
        raise AssertionError(f"{page.name}: the page never finished loading in Chromium")
    text = "".join(reader.text)
    report = reader.report
    return {"errors": report["errors"], "images": report["images"], "tables": reader.tables,
            "raw_math": [m for m in ("\\(", "\\[", "$$") if m in text], "mathjax": report["mathjax"],
            "widget_views": report["widget_views"], "widgets": report["widgets"],
            "broken_widgets": report["broken_widgets"]}
