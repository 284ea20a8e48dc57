"""The API fuzzed against its own OpenAPI document (schemathesis, in process, bounded): no request
it can generate gets a 5xx, an undocumented status or content type, or a body that breaks its
declared schema. Limits that depend on the prompt (its length against the context) cannot be in
a schema, so schema-valid requests may still get a 400; that check is left out."""

import schemathesis
from hypothesis import HealthCheck, given, settings

from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.serve.app import create_app

EXAMPLES = 30     # per operation: about ten seconds in all


def test_no_generated_request_breaks_the_server_or_its_spec(tmp_path):
    engine = Engine.from_run(make_tiny_run(tmp_path / "run"), max_batch=4)
    app = create_app(engine, model_name="tiny", max_tokens_limit=16)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen = {}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call()
                seen.setdefault(operation.label, set()).add(response.status_code)
                case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])

            check()
    finally:
        engine.close()
    assert {"POST /v1/completions", "POST /v1/chat/completions", "POST /tokenize", "POST /v1/classify",
            "POST /v1/embeddings"} <= set(seen)
    assert 200 in seen["POST /v1/completions"] and 400 in seen["POST /v1/completions"]   # both sides were reached
