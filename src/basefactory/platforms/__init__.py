"""Platforms: make a base image (pull it, or bootstrap it locally), probe it, fingerprint it."""
