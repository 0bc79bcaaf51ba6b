// A Compiler Explorer short link (POST /api/shortener, as CE's clients make them) opens the app
// on that state at /z/{id}.
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("a Compiler Explorer short link opens the playground on its state", async ({ page }) => {
  const source = "int main(void) {\n    return 40 + 2;\n}\n";
  const response = await page.request.post("/api/shortener", {
    data: { sessions: [{ id: 1, language: "c", source, compilers: [{ id: "gcc", options: "-O2" }] }] },
  });
  expect(response.ok()).toBeTruthy();
  const { url } = await response.json();
  const id = new URL(url).pathname.split("/").pop();
  const app = new Playground(page);
  await app.open(`/z/${id}`);
  await expect(page).toHaveURL(new RegExp(`/l/${id}$`));
  await expect.poll(() => app.editorText()).toBe(source);
  await expect(page.locator("#container-search")).toHaveValue("GCC (C)");
  await expect(app.command).toContainText("-O2");
  await expect(app.status).toContainText("Exited with code 42");
  await app.screenshot("compiler-explorer-link");
});
