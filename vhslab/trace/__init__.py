"""Instrumenting a pipeline: sites, reading (capture), writing (edit) and the vision encoder."""
