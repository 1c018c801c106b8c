"""Sphinx fixes for this book's HTML, loaded through ``local_extensions`` in ``_config.yml``.

Jupyter Book 1.x adds sphinx-thebe's inline configuration script (and togglebutton's) to every
page twice, once with no file name and once with an empty one, and the second copy throws
"Identifier 'THEBE_JS_URL' has already been declared": each page keeps the first copy of every script.

pydata-sphinx-theme reads the colour mode from the browser's storage, else from ``default_mode``,
and logs "Got invalid theme mode" on a first visit when neither is set: the default is "auto".
"""


def _one_script_each(app, pagename, templatename, context, doctree):
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        # Same file (or none) and same attributes (an inline body is one), whatever the priority.
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts
    context.setdefault("default_mode", "auto")


def setup(app):
    app.connect("html-page-context", _one_script_each, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
