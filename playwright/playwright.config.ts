// Browser tests against the real server with real microVMs. scripts/test runs them after building
// the frontend (frontend/build.sh) and the images they use (busybox, python, gcc, graphviz).
// Playwright drives Debian's chromium (/usr/bin/chromium): it never downloads a browser.
import { defineConfig } from "@playwright/test";

const port = Number(process.env.PE_E2E_PORT ?? 18080);
const root = `${__dirname}/..`;

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  // Jobs run in VMs under TCG on this machine: a few seconds each.
  timeout: 90_000,
  expect: { timeout: 30_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"], ["html", { open: "never", outputFolder: "playwright-report" }]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    viewport: { width: 1400, height: 900 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
  webServer: [
    {
      command:
        `${root}/target/debug/pe serve --listen 127.0.0.1:${port} --static-dir ${root}/dist ` +
        `--data-dir ${process.env.PE_E2E_DATA ?? "/tmp/pe-e2e-data"} --rate-per-minute 0`,
      url: `http://127.0.0.1:${port}/readyz`,
      timeout: 120_000,
      reuseExistingServer: false,
      env: { PE_WARM: process.env.PE_WARM ?? "busybox=1,python=1,gcc=1", RUST_LOG: "warn" },
    },
  ],
});
