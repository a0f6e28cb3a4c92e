import { test as base } from "@playwright/test";

export { expect } from "@playwright/test";
export type { Locator, Page, TestInfo } from "@playwright/test";

/** Every test's page keeps a log of what happened in it: requests and
 * their answers, console messages, uncaught errors. It is printed only
 * when the test fails, so a failure that cannot be reproduced at will
 * (a page that never moves on) still says what the page did. */
export const test = base.extend<{ pageLog: void }>({
  pageLog: [
    async ({ page }, use, testInfo) => {
      const started = Date.now();
      const lines: string[] = [];
      const at = () => `${((Date.now() - started) / 1000).toFixed(2)}s`;
      page.on("request", (r) => lines.push(`${at()} → ${r.method()} ${r.url()}`));
      page.on("requestfinished", async (r) => {
        const res = await r.response().catch(() => null);
        lines.push(`${at()} ← ${res?.status() ?? "?"} ${r.url()}`);
      });
      page.on("requestfailed", (r) => lines.push(`${at()} ✗ ${r.url()}: ${r.failure()?.errorText}`));
      page.on("console", (m) => lines.push(`${at()} [console.${m.type()}] ${m.text()}`));
      page.on("pageerror", (e) => lines.push(`${at()} [pageerror] ${e.message}`));
      page.on("framenavigated", (f) => {
        if (f === page.mainFrame()) lines.push(`${at()} navigated to ${f.url()}`);
      });
      await use();
      if (testInfo.status !== testInfo.expectedStatus) {
        // The last 120 lines, and every message and error before them: a
        // lazy page loads dozens of chunks, which would push them out.
        const last = lines.slice(-120);
        const earlier = lines.slice(0, -120).filter((l) => !/ [→←] /.test(l));
        const all = [...earlier, ...(earlier.length ? ["…"] : []), ...last];
        console.log(`--- what the page did in "${testInfo.title}":\n${all.join("\n")}\n---`);
      }
    },
    { auto: true },
  ],
});
