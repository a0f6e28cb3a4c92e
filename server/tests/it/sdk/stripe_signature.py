"""Stripe's own library (PyPI `stripe`) on both sides of a webhook (run by
server/tests/it/usage.rs): `sign` prints the Stripe-Signature header Stripe
would send for PAYLOAD with SECRET; `verify` checks HEADER the way Stripe's
SDK does (five minutes' tolerance) and prints the event's type. It only
signs, checks and reports: every assertion is in the Rust test."""

import os
import sys

import stripe

payload = os.environ["PAYLOAD"]
secret = os.environ["SECRET"]
if sys.argv[1] == "sign":
    print(stripe.WebhookSignature.generate_signature_header(payload, secret))
else:
    try:
        event = stripe.Webhook.construct_event(payload, os.environ["HEADER"], secret)
        print(event["type"])
    except stripe.SignatureVerificationError as e:
        print("refused:", e.user_message or "signature")
