"""Test doubles and process helpers shared by ``tests/`` and ``bench/``.

The fake Responses API server, the runner that starts the app in a child process, and the
in-memory conversation repository. The service never imports from here, and the Docker image
does not contain it.
"""
