"""Schemathesis hooks for the /api/v1 fuzz (server/tests/it/api_fuzz.rs): a
check that no response carries a secret or another user's data."""

import os

import schemathesis

FORBIDDEN = [s for s in os.environ.get("ENCLAVE_FORBIDDEN", "").split("\n") if s]


@schemathesis.check
def no_leak(ctx, response, case):
    text = response.text
    for value in FORBIDDEN:
        if value in text:
            raise AssertionError(f"a response carries a forbidden value ({value[:6]}…)")
