"""The handwriting page with its assets (index.html, app.js, decoder.js, style.css): the
server of `zoo serve`, the static page of `zoo export-web` and what a typed line writes."""
