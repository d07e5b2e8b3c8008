"""Every backend configuration in the matrix imports and loads through diffusers.

A backend that fails to import fails here (a version bump that breaks an import is what the gate
exists to catch); --qg-allow-missing-backends turns that into a skip.
"""


def test_backend_imports_and_pipeline_loads(qg, qg_case):
    record = qg.load(qg_case)
    assert record.status == "ok"
    missing = [c for c in qg_case.components if c not in record.weights]
    assert not missing, f"the loaded pipeline has no component(s) {missing}"
