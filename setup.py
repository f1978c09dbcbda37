"""Build hook: cffi compiles csrc/ into the extension earwitness._native during the install.

Everything else about the package is declared in pyproject.toml; setuptools has no
pyproject key for cffi_modules, hence this file.
"""
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
