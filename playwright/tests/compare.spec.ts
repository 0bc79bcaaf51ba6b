import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

const SOURCE = 'print("debug" if __debug__ else "optimized")\nprint("same line")\n';

test("compare: one container with two option sets, side by side, with a diff and both timings", async ({ page }) => {
  const app = new Playground(page);
  const cmp = app.compare;
  await app.open("/?container=python");
  await app.setEditorText(SOURCE);
  await cmp.toggle.click();
  await expect(cmp.toggle).toHaveAttribute("aria-pressed", "true");
  await expect(cmp.setupA).toBeVisible();
  await expect(cmp.containerB).toHaveValue("python");
  await cmp.optionB("optimize").selectOption("-O");
  await expect(cmp.setupB.getByTestId("command")).toContainText("python3 -O");
  await expect(cmp.setupA.getByTestId("command")).not.toContainText("-O");

  await app.runCompare();
  await expect(cmp.resultA.getByTestId("status")).toContainText("Exited with code 0");
  await expect(cmp.resultB.getByTestId("status")).toContainText("Exited with code 0");
  await expect(cmp.resultA.getByTestId("timings")).toContainText(/run|cached/);
  await expect(cmp.resultB.getByTestId("timings")).toContainText(/run|cached/);

  await expect(cmp.diffTab("stdout")).toContainText("differs");
  await expect(cmp.diffTab("stderr")).toContainText("same");
  await expect(cmp.summary).toContainText("stdout: A (left) and B (right) differ");
  await expect(cmp.diff.locator(".monaco-diff-editor")).toBeVisible();
  await expect.poll(() => app.diffTexts()).toEqual({ a: "debug\nsame line\n", b: "optimized\nsame line\n" });

  await cmp.diffTab("stderr").click();
  await expect(cmp.summary).toContainText("stderr: the same in A and B");
  await expect.poll(() => app.diffTexts()).toEqual({ a: "", b: "" });

  // Off again: the single view is back, with A's result.
  await cmp.toggle.click();
  await expect(cmp.setupB).toHaveCount(0);
  await expect(app.stdout).toContainText("debug");
});

test("compare: two containers on the same files", async ({ page }) => {
  const app = new Playground(page);
  const cmp = app.compare;
  await app.open("/?container=busybox");
  await app.setEditorText('echo "from $0"; echo shared\n');
  await cmp.toggle.click();
  await cmp.containerB.selectOption("python");
  await expect(cmp.setupB.getByTestId("command")).toContainText("python3");
  await app.runCompare();
  await expect(cmp.resultB.getByTestId("status")).not.toContainText("Exited with code 0");
  await expect(cmp.resultA.getByTestId("status")).toContainText("Exited with code 0");
  await expect(cmp.diffTab("stderr")).toContainText("differs");
});

test("a permalink keeps the compare state and reopens it", async ({ page, context }) => {
  const app = new Playground(page);
  const cmp = app.compare;
  await app.open("/?container=python");
  await app.setEditorText(SOURCE);
  await cmp.toggle.click();
  await cmp.optionB("optimize").selectOption("-OO");
  await app.share.click();
  await expect(app.shareUrl).toHaveValue(/\/l\/[A-Za-z0-9_-]+$/);
  const url = await app.shareUrl.inputValue();

  const other = new Playground(await context.newPage());
  await other.open(new URL(url).pathname);
  await expect(other.compare.toggle).toHaveAttribute("aria-pressed", "true");
  await expect(other.compare.optionB("optimize")).toHaveValue("-OO");
  await expect(other.option("optimize")).toHaveValue("none");
  expect(await other.editorText()).toBe(SOURCE);
  // A permalink runs what it shows: both sides.
  await expect(other.compare.resultB.getByTestId("status")).toContainText("Exited with code 0", { timeout: 60_000 });
  await expect(other.compare.diffTab("stdout")).toContainText("differs");
});

for (const width of [1400, 390]) {
  for (const scheme of ["light", "dark"] as const) {
    test(`compare screenshot, ${scheme}, ${width} px`, async ({ page }) => {
      await page.setViewportSize({ width, height: width > 500 ? 900 : 844 });
      await page.emulateMedia({ colorScheme: scheme });
      const app = new Playground(page);
      await app.open("/?container=python");
      await app.setEditorText(SOURCE);
      await app.compare.toggle.click();
      await app.compare.optionB("optimize").selectOption("-O");
      await app.runCompare();
      await expect(app.compare.summary).toContainText("differ");
      await expect.poll(() => app.monacoTheme()).toBe(scheme === "dark" ? "vs-dark" : "vs");
      await app.screenshot(`compare-${scheme}-${width}`);
    });
  }
}
