import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("? lists the keyboard shortcuts, Escape closes the list", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await page.locator("body").press("?");
  await expect(app.shortcuts).toBeVisible();
  await expect(app.shortcuts).toContainText("Ctrl+Enter");
  await expect(app.shortcuts.getByRole("button", { name: "Close" })).toBeFocused();
  await page.keyboard.press("Escape");
  await expect(app.shortcuts).toBeHidden();

  // The header's button opens it too; Close closes it.
  await app.shortcutsButton.click();
  await expect(app.shortcuts).toBeVisible();
  await app.shortcuts.getByRole("button", { name: "Close" }).click();
  await expect(app.shortcuts).toBeHidden();
});

test("? typed into a text field or the editor is just text", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await page.locator("#container-search").focus();
  await page.keyboard.type("?");
  await expect(app.shortcuts).toBeHidden();
  await page.keyboard.press("Escape");
  await app.editor.locator(".view-lines").click();
  await page.keyboard.press("End");
  await page.keyboard.type("?");
  await expect(app.shortcuts).toBeHidden();
  expect(await app.editorText()).toContain("?");
});

test("Tab reaches every control in order, each with a name, and Enter on Run runs", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("busybox");
  await page.locator("body").click({ position: { x: 1, y: 1 } });
  const seen: string[] = [];
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body) return null;
      // The accessible name, roughly: label, aria-label, text.
      const label =
        el.getAttribute("aria-label") ??
        (el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null) ??
        el.textContent;
      const inEditor = el.closest(".monaco-editor") !== null;
      return { testid: el.dataset.testid ?? el.tagName, name: (label ?? "").trim(), inEditor };
    });
    if (!focused) continue;
    expect(focused.name, `${focused.testid} has a name`).not.toBe("");
    if (focused.inEditor && !seen.includes("editor")) {
      // Tab indents in the editor; Ctrl+M (listed under ?) lets it move on, as Monaco documents.
      seen.push("editor");
      await page.keyboard.press("Control+m");
      continue;
    }
    seen.push(focused.testid);
    if (focused.testid === "run") break;
  }
  for (const control of ["compare", "share", "theme-toggle", "shortcuts-button", "add-file", "editor", "run"]) {
    expect(seen, `Tab reaches ${control}`).toContain(control);
  }
  await page.keyboard.press("Enter");
  await expect(app.status).toContainText("Exited with code 0", { timeout: 60_000 });
});
