"""The operator console: a web application the fusion server serves (``[console] listen``)."""
