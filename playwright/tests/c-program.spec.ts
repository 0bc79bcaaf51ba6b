import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("edit and run a C program with -O2", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("gcc");
  await app.option("optimization").selectOption("-O2");
  await app.option("assembly").check();
  await expect(app.command).toContainText("-O2");
  await app.setEditorText('#include <stdio.h>\nint main(void) { printf("sum=%d\\n", 40 + 2); return 0; }\n');
  await app.screenshot("editor");
  await app.runWithKeyboard();
  await expect(app.status).toContainText("Exited with code 0");
  await expect(app.stdout).toContainText("sum=42");
  await app.screenshot("text-result");
  // The assembly comes back as an output file, shown in a read-only editor.
  await page.getByTestId("output-tab").filter({ hasText: "main.s" }).click();
  const asm = page.getByTestId("output-text");
  await expect(asm.locator(".monaco-editor")).toBeVisible();
  await expect(asm).toContainText("main:");
});
