// Page Object for the playground (frontend/): role and data-testid locators only.
import { expect, type Locator, type Page } from "@playwright/test";

export class Playground {
  readonly run: Locator;
  readonly status: Locator;
  readonly stdout: Locator;
  readonly stderr: Locator;
  readonly share: Locator;
  readonly shareUrl: Locator;
  readonly runError: Locator;
  readonly command: Locator;

  constructor(readonly page: Page) {
    this.run = page.getByTestId("run");
    this.status = page.getByTestId("status");
    this.stdout = page.getByTestId("stdout");
    this.stderr = page.getByTestId("stderr");
    this.share = page.getByTestId("share");
    this.shareUrl = page.getByTestId("share-url");
    this.runError = page.getByTestId("run-error");
    this.command = page.getByTestId("command-preview");
  }

  /** Opens a page of the app and waits until the editor is there. */
  async open(path = "/") {
    await this.page.goto(path);
    await this.page.locator(".monaco-editor").first().waitFor({ timeout: 30_000 });
  }

  /** Picks a container with the search box. */
  async pickContainer(id: string) {
    const search = this.page.locator("#container-search");
    await search.click();
    await search.fill(id);
    await this.page.locator(`li[data-container="${id}"]`).click();
    await expect(search).toHaveValue(await this.containerName(id));
  }

  private async containerName(id: string): Promise<string> {
    const response = await this.page.request.get(`/api/v1/containers/${encodeURIComponent(id)}`);
    return (await response.json()).name;
  }

  option(id: string): Locator {
    return this.page.getByTestId(`option-${id}`);
  }

  /** Replaces the text of the open file, as typing or pasting would. */
  async setEditorText(text: string) {
    await this.page.evaluate((value) => {
      const editor = (window as any).monaco.editor.getEditors()[0];
      editor.getModel().setValue(value);
    }, text);
  }

  async editorText(): Promise<string> {
    return this.page.evaluate(() => (window as any).monaco.editor.getEditors()[0].getModel().getValue());
  }

  /** Runs with Ctrl+Enter from the editor, as a person would, and waits for the status. */
  async runWithKeyboard() {
    await this.page.locator(".monaco-editor textarea").first().focus();
    await this.page.keyboard.press("Control+Enter");
    await expect(this.status).toBeVisible({ timeout: 60_000 });
  }

  async runAndWait() {
    await this.run.click();
    await expect(this.status).toBeVisible({ timeout: 60_000 });
  }

  async screenshot(name: string) {
    await this.page.screenshot({ path: `test-results/screens/${name}.png`, fullPage: true });
  }
}
