import http from "node:http";
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";
import { ToolIndex, ToolPage } from "../pages/site";

test("landing -> tool page -> run its example", async ({ page }) => {
  const index = new ToolIndex(page);
  await index.open();
  await page.getByLabel("Search the tools").fill("graph");
  await index.tool("Graphviz").click();
  await expect(page).toHaveURL(/\/tools\/graphviz$/);
  const tool = new ToolPage(page);
  await expect(page.getByRole("heading", { name: "Graphviz", level: 1 })).toBeVisible();
  await tool.example("Circle as PNG").click();

  const app = new Playground(page);
  await page.locator(".monaco-editor").first().waitFor();
  await expect(app.option("format")).toHaveValue("png");
  await expect(app.option("layout")).toHaveValue("circo");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 0");
  await page.getByTestId("output-tab").filter({ hasText: "graph.png" }).click();
  await expect(page.getByTestId("output-image")).toBeVisible();
});

test("the iframe snippet works from another origin, and its link restores the state", async ({ page, context }) => {
  const tool = new ToolPage(page);
  await page.goto("/tools/busybox");
  const snippet = await tool.snippet.innerText();
  expect(snippet).toContain("/embed/busybox");

  // A plain HTML page on another port, holding only the snippet.
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end(`<!doctype html><title>A maintainer's page</title><h1>Try busybox</h1>${snippet}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  try {
    await page.goto(`http://127.0.0.1:${port}/`);
    const frame = page.frameLocator("iframe");
    await frame.locator(".monaco-editor").first().waitFor({ timeout: 30_000 });
    await page.evaluate(() => 0); // the outer page is plain HTML
    await frame.getByTestId("run").click();
    await expect(frame.getByTestId("status")).toContainText("Exited with code 0", { timeout: 60_000 });
    await expect(frame.getByTestId("stdout")).toContainText("Hello from");

    const [opened] = await Promise.all([context.waitForEvent("page"), frame.getByTestId("open-in-pe").click()]);
    await opened.waitForURL(/\/l\/[A-Za-z0-9_-]+$/);
    const full = new Playground(opened);
    await opened.locator(".monaco-editor").first().waitFor();
    await expect(opened.locator("#container-search")).toHaveValue("BusyBox shell");
    expect(await full.editorText()).toContain('echo "Hello from $(uname -s) in a microVM"');
  } finally {
    server.close();
  }
});
