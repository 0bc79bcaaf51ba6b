import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

test("a shared permalink reopens with identical state", async ({ page, context }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("python");
  await app.option("optimize").selectOption("-O");
  const source = "print('shared state', 7 * 6)\n";
  await app.setEditorText(source);
  await app.share.click();
  await expect(app.shareUrl).toHaveValue(/\/l\/[A-Za-z0-9_-]+$/);
  const url = await app.shareUrl.inputValue();

  const other = new Playground(await context.newPage());
  await other.open(new URL(url).pathname);
  await expect(other.page.locator("#container-search")).toHaveValue("Python 3");
  await expect(other.option("optimize")).toHaveValue("-O");
  expect(await other.editorText()).toBe(source);
  await expect(other.command).toContainText("-O");
});
