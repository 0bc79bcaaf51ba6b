import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("graphviz renders its SVG output as an image", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("graphviz");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 0");
  const tab = page.getByTestId("output-tab").filter({ hasText: "graph.svg" });
  await tab.click();
  const image = page.getByTestId("output-image");
  await expect(image).toBeVisible();
  // The SVG is shown as an image (never inline), and it actually decoded.
  expect(await image.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)).toBe(true);
  await app.screenshot("image-result");
});
