// The official `openai` npm SDK as a client of Enclave's /v1 (run by
// server/tests/it/openai_sdk.rs, which checks what it prints). It only
// calls and reports: every assertion is in the Rust test.
const OpenAI = require(process.env.OPENAI_MODULE);

const baseURL = process.env.ENCLAVE_URL + "/v1";
const model = process.env.ENCLAVE_MODEL;
const client = new OpenAI({ baseURL, apiKey: process.env.ENCLAVE_KEY, maxRetries: 0 });

async function failure(call) {
  try {
    await call();
    return { ok: true };
  } catch (e) {
    return { name: e.constructor.name, status: e.status ?? null, code: e.code ?? null, message: e.message };
  }
}

(async () => {
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);

  const completion = await client.chat.completions.create({
    model,
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hello from node" },
    ],
  });
  out.completion = {
    id: completion.id,
    content: completion.choices[0].message.content,
    finish: completion.choices[0].finish_reason,
    usage: completion.usage,
  };

  const stream = await client.chat.completions.create({
    model,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Stream to node" }],
  });
  let text = "";
  let usage = null;
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    const choice = chunk.choices[0];
    if (choice?.delta?.content) text += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  out.stream = { text, usage, chunks, finish };

  const messages = [{ role: "user", content: "Hi" }];
  out.bad_key = await failure(() =>
    new OpenAI({ baseURL, apiKey: "enc_not-a-key", maxRetries: 0 }).chat.completions.create({ model, messages }),
  );
  out.unknown_model = await failure(() => client.chat.completions.create({ model: "no-such-agent", messages }));
  out.rate_limited = await failure(() =>
    new OpenAI({ baseURL, apiKey: process.env.ENCLAVE_LIMITED_KEY, maxRetries: 0 }).models.list(),
  );
  out.failed_stream = await failure(async () => {
    const failing = await client.chat.completions.create({
      model: process.env.ENCLAVE_FAILING_MODEL,
      stream: true,
      messages,
    });
    for await (const _ of failing) {
      // read to the end
    }
  });
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
