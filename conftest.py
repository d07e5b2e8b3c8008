"""Root conftest of the quantgate repository.

The gate itself is the pytest plugin `quantgate.plugin`, loaded through its entry point once the
package is installed (pip install -e .). This file only checks that it is.
"""

import importlib.util

import pytest


def pytest_configure(config):
    if not (config.pluginmanager.has_plugin("quantgate") or config.pluginmanager.has_plugin("quantgate.plugin")):
        found = importlib.util.find_spec("quantgate") is not None
        raise pytest.UsageError(
            "the quantgate pytest plugin is not loaded: install the package first "
            "(pip install -e '.[backends,test]')" + ("" if found else "; the quantgate package is not importable"))

# pytester runs the gate in a subprocess for the harness's own tests (tests/unit).
pytest_plugins = ["pytester"]
