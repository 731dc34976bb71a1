"""Sphinx extension: drop repeated inline scripts from every HTML page.

With Jupyter Book 1.0.4, sphinx-thebe 0.3.1 and sphinx-togglebutton 0.4.5,
the inline configuration scripts of both extensions appear twice in each
page, once with filename None and once with an empty filename. The repeated
``const THEBE_JS_URL`` declaration then throws a SyntaxError in the browser.
Keeping the first copy of each script is enough.
"""

from __future__ import annotations


def _keep_first_copies(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # An inline script may carry filename None or "" depending on how it was added.
        key = (str(script.filename or ""), tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _keep_first_copies, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
