// axe-core (from npm, @axe-core/playwright) on each kind of page: no serious or critical
// violation, in light and in dark.
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

const PAGES: [string, string, (page: Page) => Promise<void>][] = [
  ["the playground", "/", (page) => page.locator(".monaco-editor").first().waitFor()],
  ["a tool page", "/tools/python", (page) => page.frameLocator("iframe.playground").locator(".monaco-editor").first().waitFor()],
  ["the docs", "/docs", async () => {}],
  ["a docs page with code", "/docs/api", async () => {}],
  ["the tool index", "/tools", async () => {}],
  ["the embed view", "/embed/python", (page) => page.locator(".monaco-editor").first().waitFor()],
];

for (const scheme of ["light", "dark"] as const) {
  for (const [name, path, ready] of PAGES) {
    test(`${name} (${path}) has no serious or critical violation, ${scheme}`, async ({ page }) => {
      await page.emulateMedia({ colorScheme: scheme });
      await page.goto(path);
      await ready(page);
      const results = await new AxeBuilder({ page }).analyze();
      const serious = results.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
      expect(serious, JSON.stringify(serious, null, 2)).toEqual([]);
    });
  }
}

test("the playground after a run, with output, has no serious or critical violation", async ({ page }) => {
  await page.goto("/?container=busybox");
  await page.locator(".monaco-editor").first().waitFor();
  await page.getByTestId("run").click();
  await expect(page.getByTestId("status")).toContainText("Exited", { timeout: 60_000 });
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)).toEqual([]);
});

test("the compare view after a run, with its diff, has no serious or critical violation", async ({ page }) => {
  await page.goto("/?container=python");
  await page.locator(".monaco-editor").first().waitFor();
  await page.getByTestId("compare").click();
  await page.getByTestId("b-option-optimize").selectOption("-O");
  await page.getByTestId("run").click();
  await expect(page.getByTestId("result-b").getByTestId("status")).toBeVisible({ timeout: 60_000 });
  await page.getByTestId("diff").locator(".monaco-diff-editor").waitFor();
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)).toEqual([]);
});
