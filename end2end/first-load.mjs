// What a first visit to a page downloads, as Chromium loads it: every
// script, style sheet and WebAssembly module the page asks for until the
// network is quiet, each with its size as sent and compressed with brotli
// (quality 11, as `cargo leptos --precompress` does). `make bench` runs it
// on Open WebUI (BENCH_PEERS=1) and on Enclave, so both are weighed alike.
//
//   node end2end/first-load.mjs http://127.0.0.1:PORT/
//
// Prints one JSON object: { url, resources: [{ url, type, raw, brotli }] }.
import { chromium } from "@playwright/test";
import { brotliCompressSync, constants } from "node:zlib";

const url = process.argv[2];
if (!url) {
  console.error("usage: node first-load.mjs URL");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
});
try {
  const page = await browser.newPage();
  const pending = [];
  page.on("response", (response) => {
    const request = response.request();
    const type = request.resourceType();
    const path = new URL(response.url()).pathname;
    const wasm = path.endsWith(".wasm");
    if (type !== "script" && type !== "stylesheet" && !wasm) return;
    // A body the page streamed into WebAssembly.instantiateStreaming is
    // not kept by the browser: fetch that one again.
    const body = response
      .body()
      .catch(() => page.request.get(response.url()).then((again) => again.body()));
    pending.push(
      body.then((body) => ({
        url: response.url(),
        type: wasm ? "wasm" : type,
        raw: body.length,
        brotli: brotliCompressSync(body, {
          params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
        }).length,
      })),
    );
  });
  await page.goto(url, { waitUntil: "networkidle", timeout: 120_000 });
  const resources = (await Promise.all(pending)).filter(Boolean);
  console.log(JSON.stringify({ url: page.url(), resources }));
} finally {
  await browser.close();
}
