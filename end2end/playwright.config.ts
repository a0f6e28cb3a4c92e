import { defineConfig } from "@playwright/test";

// The server is started by .ci/test.sh, which passes its address in BASE_URL.
const baseURL = process.env.BASE_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: true,
  workers: 2,
  retries: 0,
  reporter: [["list"]],
  projects: [
    { name: "app", testIgnore: /\.last\.spec\.ts$/ },
    // What changes the whole server (publishing a policy version mails every
    // user and shows them a notice) runs once everything else is done.
    { name: "last", testMatch: /\.last\.spec\.ts$/, dependencies: ["app"] },
  ],
  use: {
    baseURL,
    browserName: "chromium",
    trace: "off",
    launchOptions: {
      // Debian's Chromium: Playwright never downloads a browser here.
      executablePath: "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
