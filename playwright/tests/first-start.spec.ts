// A first start (`pe serve --build-missing`): the app serves while the images are still being
// built. This test starts a second server of its own (first-start-server.sh: a new image store
// and a catalog of busybox and jq, where jq takes half a minute or more to build) when it
// begins, not with the suite: the suite's earlier specs take longer than jq's build.
// jq shows as queued or building, a run says when it will be ready, and once its image is built
// it runs.
import { type ChildProcess, spawn } from "node:child_process";
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

const port = Number(process.env.PE_E2E_FIRST_START_PORT ?? 18081);
const base = `http://127.0.0.1:${port}`;
let server: ChildProcess | undefined;

test.beforeAll(async () => {
  test.setTimeout(180_000);
  server = spawn(`${__dirname}/../first-start-server.sh`, [String(port)], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: "inherit",
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error("the first-start server did not answer /healthz");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
});

test.afterAll(async () => {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server!.once("exit", resolve));
  server.kill("SIGTERM");
  await exited;
});

test.use({ baseURL: base });

test("a container still being built shows its state, and runs once it is ready", async ({ page }) => {
  test.setTimeout(360_000);
  const app = new Playground(page);
  await app.open("/?container=jq");
  const search = page.locator("#container-search");
  const jq = page.locator('li[data-container="jq"]');
  await search.click();
  await search.fill("jq");
  await expect(jq.locator(".badge.warn")).toHaveText(/^(queued #\d+|building \d+%), ready in ~\d+ (s|min)$/);
  await jq.click();

  await app.run.click();
  await expect(app.runError).toContainText(/(queued for building|being built).*ready in about \d+ (s|min)/i);

  // The app asks for the catalog again while images build: the badge goes once jq is ready.
  await search.click();
  await search.fill("jq");
  await expect(jq.locator(".badge.warn")).toHaveCount(0, { timeout: 300_000 });
  await jq.click();
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 0");
  await expect(app.runError).toHaveCount(0);
});
