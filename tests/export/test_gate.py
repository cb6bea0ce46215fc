"""The export gate's typed report is the JSON bundles keep: it reads every shipped layout back unchanged."""

import json

import pytest

from aligngemini_sdk.detector import default_bundle_path
from aligngemini_sdk.export.gate import GateReport, gate_markdown

pytestmark = pytest.mark.shared_data  # reads ../shared/data (skipped, with the reason, without it)


def test_the_shipped_default_bundles_gate_records_load_and_serialise_back_unchanged():
    branches = json.loads((default_bundle_path() / "manifest.json").read_text())["branches"]
    for branch in ("pixel", "semantic"):
        validation = branches[branch]["validation"]
        rep = GateReport.from_dict(validation)
        assert rep.to_dict() == validation
        fp16w = rep.artifacts["fp16w"]
        assert fp16w.passed and fp16w.agreement is not None and fp16w.agreement >= 0.98 and fp16w.int8 is None
        assert "pytorch (reference)" in gate_markdown(rep) and "✅ pass" in gate_markdown(rep)


def test_an_int8_gate_record_round_trips_with_its_search_and_proof(int8_bundle):
    validation = json.loads((int8_bundle / "manifest.json").read_text())["branches"]["pixel"]["validation"]
    rep = GateReport.from_dict(validation)
    assert rep.to_dict() == validation
    int8 = rep.artifacts["int8"]
    assert int8.int8 is not None and int8.int8.scheme == "static" and int8.int8_safety is not None
    assert int8.int8_safety["safe"] and int8.float_input_agreement is not None


def test_an_exported_bundles_gate_record_round_trips(ladeda_bundle):
    validation = json.loads((ladeda_bundle / "manifest.json").read_text())["branches"]["pixel"]["validation"]
    rep = GateReport.from_dict(validation)
    assert rep.to_dict() == validation and list(rep.to_dict()) == list(validation)  # same keys, same order
    assert rep.artifacts["fp32"].passed and rep.failures == []
