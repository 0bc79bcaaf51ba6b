import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test.use({ viewport: { width: 390, height: 844 } });

test("at 390 px the editor, options and output stack, nothing overflows, Run is reachable", async ({ page }) => {
  const app = new Playground(page);
  await app.open("/?container=python");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width, "no sideways scrolling").toBeLessThanOrEqual(390);

  const editor = await app.editor.boundingBox();
  const options = await app.options.boundingBox();
  expect(editor!.width).toBeGreaterThan(340);
  expect(editor!.height).toBeGreaterThan(200);
  expect(options!.y, "options below the editor").toBeGreaterThanOrEqual(editor!.y + editor!.height);

  // Run is on screen from the start: its bar sticks to the bottom until its place comes.
  await expect(app.run).toBeInViewport();
  await app.setEditorText("print('small', 6 * 7)\n");
  await app.run.click();
  await expect(app.status).toContainText("Exited with code 0", { timeout: 60_000 });
  await expect(app.stdout).toHaveText("small 42");
  const output = await app.output.boundingBox();
  expect(output!.y, "output below the options").toBeGreaterThan(options!.y);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
});

test("at 390 px the header's controls fit and work", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  for (const control of [page.locator("#container-search"), app.share, app.themeToggle, app.shortcutsButton]) {
    await expect(control).toBeVisible();
    const box = await control.boundingBox();
    expect(box!.x + box!.width).toBeLessThanOrEqual(390);
  }
  await app.pickContainer("busybox");
  await expect(app.command).toContainText("sh");
});
