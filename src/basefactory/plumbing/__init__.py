"""Plumbing every stage uses: logging, output, progress, errors, content digests and the
on-disk memo, failpoints, the one-writer lock and Dockerfile templates."""
