"""Audits that run inside a container of what they audit: the ABI audit loads every
extension module of an image (or of one wheel in its test container) against the
libraries that image really has."""
