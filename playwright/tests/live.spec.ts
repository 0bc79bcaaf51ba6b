// Live runs in the browser: the terminal shows output while the program runs, a typed line gets
// the program's answer, Stop ends the run, ANSI colours render; then the usual result panel.
import { expect, test, type Page } from "@playwright/test";
import { Playground } from "../pages/playground";

/** The terminal's rows, as text. */
function terminal(page: Page) {
  return page.getByTestId("live-terminal").locator(".xterm-rows");
}

async function liveApp(page: Page, program: string): Promise<Playground> {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("python");
  await app.setEditorText(program);
  await page.getByTestId("live-toggle").check();
  return app;
}

test("a live line shows before the run ends", async ({ page }) => {
  const app = await liveApp(
    page,
    "import time\nprint('first line', flush=True)\ntime.sleep(4)\nprint('second line')\n",
  );
  await app.run.click();
  await expect(terminal(page)).toContainText("first line", { timeout: 60_000 });
  // The program is still sleeping: no result yet, and the second line has not come.
  await expect(app.status).toHaveCount(0);
  await expect(terminal(page)).not.toContainText("second line");
  await app.screenshot("live-running");
  await expect(app.status).toContainText("Exited with code 0", { timeout: 60_000 });
  await expect(app.stdout).toContainText("first line\nsecond line");
});

test("a typed line gets the program's answer, Ctrl+D ends its input", async ({ page }) => {
  const app = await liveApp(
    page,
    "import sys\nprint('give me numbers', flush=True)\nfor line in sys.stdin:\n    print(int(line) ** 2, flush=True)\nprint('done')\n",
  );
  await app.run.click();
  await expect(terminal(page)).toContainText("give me numbers", { timeout: 60_000 });
  const input = page.getByTestId("live-stdin");
  await input.fill("7");
  await input.press("Enter");
  await expect(terminal(page)).toContainText("49");
  await input.fill("12");
  await input.press("Enter");
  await expect(terminal(page)).toContainText("144");
  await input.press("Control+d");
  await expect(app.status).toContainText("Exited with code 0", { timeout: 60_000 });
  await expect(app.stdout).toContainText("give me numbers\n49\n144\ndone");
});

test("Stop ends the run and its result shows", async ({ page }) => {
  const app = await liveApp(page, "import time\nprint('ready', flush=True)\ntime.sleep(60)\n");
  await app.run.click();
  await expect(terminal(page)).toContainText("ready", { timeout: 60_000 });
  await page.getByTestId("stop").click();
  await expect(app.status).toBeVisible({ timeout: 15_000 });
  await expect(app.status).toContainText("signal 9");
  await expect(app.output).toContainText("stopped by the user");
});

test("colours render, and stderr is told apart", async ({ page }) => {
  const app = await liveApp(
    page,
    "import sys, time\nprint('\\x1b[32mgreen text\\x1b[0m plain', flush=True)\nprint('an error line', file=sys.stderr, flush=True)\ntime.sleep(4)\n",
  );
  for (const theme of ["light", "dark"]) {
    for (let i = 0; i < 3 && (await app.theme()) !== theme; i++) {
      await app.themeToggle.click();
    }
    expect(await app.theme()).toBe(theme);
    await app.run.click();
    const rows = terminal(page);
    await expect(rows).toContainText("an error line", { timeout: 60_000 });
    // xterm.js's DOM renderer marks coloured cells with a class per ANSI colour.
    await expect(rows.locator("span.xterm-fg-2")).toContainText("green text");
    await expect(rows.locator("span.xterm-fg-9")).toContainText("an error line");
    await app.screenshot(`live-colours-${theme}`);
    await expect(app.status).toBeVisible({ timeout: 60_000 });
    // The result panel shows the text without the escapes.
    await expect(app.stdout).toHaveText("green text plain");
  }
});
