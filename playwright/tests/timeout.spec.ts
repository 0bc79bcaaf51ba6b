import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("a program that loops shows a timeout", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("busybox");
  await app.setEditorText("echo looping; while :; do :; done\n");
  await app.runAndWait();
  await expect(app.status).toContainText("Timed out");
  await expect(app.stdout).toContainText("looping");
});
