"""``seppo-video view``: a Gradio page over run folders (needs the ``viewer`` extra).

``runs`` reads run folders without Gradio; ``ui`` builds and serves the page;
``app`` is the command line.
"""
