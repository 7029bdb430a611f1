"""schemathesis hooks of tests/contract/run.sh (loaded through SCHEMATHESIS_HOOKS).

The built-in identity provider speaks Amazon Cognito's wire format, AWS JSON 1.1:
`application/x-amz-json-1.1` is JSON under another name. Taught so, schemathesis sends its
generated bodies and validates the answers against the document instead of skipping them.
"""

import json

import schemathesis

schemathesis.serializer.alias("application/x-amz-json-1.1", "application/json")


@schemathesis.deserializer("application/x-amz-json-1.1")
def amz_json(ctx, response):
    return json.loads(response.content)
