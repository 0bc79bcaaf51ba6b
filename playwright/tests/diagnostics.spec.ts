// Diagnostics: a compiler's errors as Monaco markers (squiggle, hover text), a count on the
// file's tab and a list under the output whose entries jump to the spot.
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("a gcc error is a squiggle with its message on hover, counted on the tab and listed", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("gcc");
  await app.setEditorText("#include <stdio.h>\n\nint main(void) {\n    int x = 1\n    return x;\n}\n");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 1");

  // One squiggle, under `return` on line 5, and the count on main.c's tab.
  const squiggle = app.editor.locator(".squiggly-error");
  await expect(squiggle).toHaveCount(1);
  // gcc also warns that x is unused (its use is in the statement that failed to parse).
  await expect(app.editor.locator(".squiggly-warning")).toHaveCount(1);
  await expect(app.diagnosticCount("main.c")).toHaveText("2");
  // The text layer lies over the squiggle: point the mouse at its place.
  const box = (await squiggle.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 4 });
  const hover = page.locator(".monaco-hover-content").filter({ hasText: "before 'return'" });
  await expect(hover).toBeVisible();
  await expect(hover).toContainText("expected ',' or ';' before 'return'");
  await app.screenshot("diagnostics-hover");

  // The list under the output: a click puts the cursor on the spot.
  await expect(app.diagnostics).toHaveCount(2);
  const error = app.diagnostics.filter({ hasText: "main.c:5:5" });
  await expect(error).toContainText("error");
  await app.setCursor(1);
  await error.click();
  await expect.poll(() => app.cursor()).toEqual({ lineNumber: 5, column: 5 });
  await app.screenshot("diagnostics-list");
});

test("a Python traceback marks the failing line and its callers", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("python");
  await app.setEditorText("def divide(a, b):\n    return a / b\n\nprint(divide(1, 0))\n");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 1");
  await expect(app.editor.locator(".squiggly-error")).toHaveCount(1);
  await expect(app.diagnostics.first()).toContainText("ZeroDivisionError: division by zero");
  await expect(app.diagnostics).toHaveCount(2);
  await expect(app.diagnosticCount("main.py")).toHaveText("1");
});
