import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("the theme follows the system, and Monaco with it", async ({ page }) => {
  const app = new Playground(page);
  await page.emulateMedia({ colorScheme: "dark" });
  await app.open();
  await expect.poll(() => app.theme()).toBe("dark");
  await expect.poll(() => app.monacoTheme()).toBe("vs-dark");
  await expect(app.themeToggle).toHaveAccessibleName(/Auto theme: following the system \(dark\)/);

  await page.emulateMedia({ colorScheme: "light" });
  await expect.poll(() => app.theme()).toBe("light");
  await expect.poll(() => app.monacoTheme()).toBe("vs");
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(246, 247, 249)");
});

test("the toggle overrides the system, is kept, and goes back to the system", async ({ page }) => {
  const app = new Playground(page);
  await page.emulateMedia({ colorScheme: "light" });
  await app.open();
  await app.themeToggle.click();
  await expect.poll(() => app.theme()).toBe("dark");
  await expect.poll(() => app.monacoTheme()).toBe("vs-dark");
  await expect(app.themeToggle).toHaveAccessibleName("Dark theme");
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(21, 24, 30)");

  // Kept across a reload, and by the static site's pages (same origin, same key).
  await app.open();
  await expect.poll(() => app.theme()).toBe("dark");
  await page.goto("/tools");
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect(page.getByTestId("theme-toggle")).toHaveAccessibleName("Dark theme");

  // The site's toggle changes it back for the app too: follow the system again.
  await page.getByTestId("theme-toggle").click();
  await expect(page.locator("html")).not.toHaveAttribute("data-theme", /./);
  await app.open();
  await expect.poll(() => app.theme()).toBe("light");
  await expect(app.themeToggle).toHaveAccessibleName(/following the system \(light\)/);
});

test("the toggle on a tool page changes the embedded playground too", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "light" });
  await page.goto("/tools/python");
  const frame = page.frameLocator("iframe.playground");
  await frame.locator(".monaco-editor").first().waitFor();
  await expect(frame.locator("html")).toHaveAttribute("data-theme", "light");
  await page.getByTestId("theme-toggle").click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect(frame.locator("html")).toHaveAttribute("data-theme", "dark");
  await expect(frame.locator(".monaco-editor").first()).toHaveClass(/vs-dark/);
});
