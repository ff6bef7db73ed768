"""Task modules that tests run in real ``taskq-worker`` subprocesses.

This package itself defines no App: ``taskq-worker tests.apps`` is the "module without an App"
case of the exit-code tests.
"""
