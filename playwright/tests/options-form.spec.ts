import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("switching containers re-renders the options form", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("gcc");
  await expect(app.option("optimization")).toBeVisible();
  await expect(app.option("standard")).toBeVisible();
  await app.pickContainer("jq");
  await expect(app.option("filter")).toBeVisible();
  await expect(app.option("optimization")).toHaveCount(0);
});

test("an invalid option value is refused in the form", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("jq");
  // jq's filter may not start with '-' (it would be read as a flag).
  await app.option("filter").fill("-r .");
  await expect(page.getByTestId("option-error")).toContainText("filter");
  await expect(app.run).toBeDisabled();
  await app.option("filter").fill(".users[].name");
  await expect(page.getByTestId("option-error")).toHaveCount(0);
  await expect(app.run).toBeEnabled();
});
