"""Root conftest of the quantgate repository.

The gate itself is the pytest plugin `quantgate.gate.plugin`, loaded through its entry point once the
package is installed (pip install -e .). Where it is not installed but importable (a GPU host that
runs the checkout with PYTHONPATH=wheels:repo), or where plugin autoloading is off, this file loads
it by name, so the gate's options are known before pytest parses them; it checks that it is loaded.
"""

import importlib.metadata
import importlib.util
import os

import pytest


def pytest_configure(config):
    if not (config.pluginmanager.has_plugin("quantgate") or config.pluginmanager.has_plugin("quantgate.gate.plugin")):
        found = importlib.util.find_spec("quantgate") is not None
        raise pytest.UsageError(
            "the quantgate pytest plugin is not loaded: install the package first "
            "(pip install -e '.[backends,test]')" + ("" if found else "; the quantgate package is not importable"))



def _loaded_by_entry_point() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(e.name == "quantgate" for e in importlib.metadata.entry_points(group="pytest11"))


# pytester runs the gate in a subprocess for the harness's own tests (tests/unit).
pytest_plugins = ["pytester"]
if importlib.util.find_spec("quantgate") is not None and not _loaded_by_entry_point():
    pytest_plugins.append("quantgate.gate.plugin")
