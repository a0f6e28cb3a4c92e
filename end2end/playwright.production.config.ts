import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// The production walk-through (.ci/tests/production.sh): the release build
// behind nginx with a self-signed certificate, at BASE_URL.
export default defineConfig({
  ...base,
  testDir: "./production",
  projects: undefined,
  workers: 1,
  use: { ...base.use, baseURL: process.env.BASE_URL, ignoreHTTPSErrors: true },
});
