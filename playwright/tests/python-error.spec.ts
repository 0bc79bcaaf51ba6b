import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("a Python error shows stderr and a non-zero exit", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("python");
  await app.setEditorText("print('before')\nraise ValueError('broken on purpose')\n");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 1");
  await expect(app.stderr).toContainText("ValueError: broken on purpose");
  await expect(app.stdout).toContainText("before");
  await app.screenshot("error-state");
});
