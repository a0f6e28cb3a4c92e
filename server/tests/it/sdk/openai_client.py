"""The official `openai` PyPI SDK as a client of Enclave's /v1 (run by
server/tests/it/openai_sdk.rs, which checks what it prints). It only calls
and reports: every assertion is in the Rust test."""

import json
import os

import openai

base_url = os.environ["ENCLAVE_URL"] + "/v1"
model = os.environ["ENCLAVE_MODEL"]
client = openai.OpenAI(base_url=base_url, api_key=os.environ["ENCLAVE_KEY"], max_retries=0)


def failure(call):
    try:
        call()
        return {"ok": True}
    except openai.APIError as e:
        return {
            "name": type(e).__name__,
            "status": getattr(e, "status_code", None),
            "code": e.code,
            "message": e.message,
        }


out = {}
out["models"] = [m.id for m in client.models.list().data]

completion = client.chat.completions.create(
    model=model,
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello from python"},
    ],
)
out["completion"] = {
    "id": completion.id,
    "content": completion.choices[0].message.content,
    "finish": completion.choices[0].finish_reason,
    "usage": completion.usage.model_dump() if completion.usage else None,
}

text, usage, chunks, finish = "", None, 0, None
for chunk in client.chat.completions.create(
    model=model,
    stream=True,
    stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "Stream to python"}],
):
    chunks += 1
    if chunk.choices:
        if chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    if chunk.usage:
        usage = chunk.usage.model_dump()
out["stream"] = {"text": text, "usage": usage, "chunks": chunks, "finish": finish}

messages = [{"role": "user", "content": "Hi"}]
out["bad_key"] = failure(
    lambda: openai.OpenAI(base_url=base_url, api_key="enc_not-a-key", max_retries=0)
    .chat.completions.create(model=model, messages=messages)
)
out["unknown_model"] = failure(
    lambda: client.chat.completions.create(model="no-such-agent", messages=messages)
)
out["rate_limited"] = failure(
    lambda: openai.OpenAI(
        base_url=base_url, api_key=os.environ["ENCLAVE_LIMITED_KEY"], max_retries=0
    ).models.list()
)


def failing_stream():
    for _ in client.chat.completions.create(
        model=os.environ["ENCLAVE_FAILING_MODEL"], stream=True, messages=messages
    ):
        pass


out["failed_stream"] = failure(failing_stream)
print(json.dumps(out))
