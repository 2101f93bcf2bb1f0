"""Packaging lives in pyproject.toml; this file is there for tools and habits that look for setup.py
(e.g. `python setup.py develop` or an editable install with an old pip). It adds nothing."""

from setuptools import setup

setup()
