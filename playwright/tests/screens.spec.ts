// Screenshots of the playground after a run, light and dark, wide and narrow:
// test-results/screens/playground-{light,dark}-{1400,390}.png.
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

for (const width of [1400, 390]) {
  for (const scheme of ["light", "dark"] as const) {
    test(`playground, ${scheme}, ${width} px`, async ({ page }) => {
      await page.setViewportSize({ width, height: width > 500 ? 900 : 844 });
      await page.emulateMedia({ colorScheme: scheme });
      const app = new Playground(page);
      await app.open("/?container=python");
      await app.runAndWait();
      await expect(app.status).toContainText("Exited with code 0");
      await expect.poll(() => app.theme()).toBe(scheme);
      await expect.poll(() => app.monacoTheme()).toBe(scheme === "dark" ? "vs-dark" : "vs");
      await app.screenshot(`playground-${scheme}-${width}`);
    });
  }
}
