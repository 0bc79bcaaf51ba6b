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
  readonly themeToggle: Locator;
  readonly shortcutsButton: Locator;
  readonly shortcuts: Locator;
  readonly editor: Locator;
  readonly options: Locator;
  readonly output: Locator;
  readonly diagnostics: Locator;
  readonly asmPane: Locator;
  readonly asmEditor: Locator;

  constructor(readonly page: Page) {
    this.run = page.getByTestId("run");
    this.status = page.getByTestId("status");
    this.stdout = page.getByTestId("stdout");
    this.stderr = page.getByTestId("stderr");
    this.share = page.getByTestId("share");
    this.shareUrl = page.getByTestId("share-url");
    this.runError = page.getByTestId("run-error");
    this.command = page.getByTestId("command-preview");
    this.themeToggle = page.getByTestId("theme-toggle");
    this.shortcutsButton = page.getByRole("button", { name: "Keyboard shortcuts" });
    this.shortcuts = page.getByRole("dialog", { name: "Keyboard shortcuts" });
    this.editor = page.getByTestId("editor");
    this.options = page.getByRole("form", { name: "Options", exact: true });
    this.output = page.getByRole("region", { name: "Output", exact: true });
    this.diagnostics = page.getByTestId("diagnostic");
    this.asmPane = page.getByTestId("asm-pane");
    this.asmEditor = page.getByTestId("asm-editor");
  }

  /** The compare view's toggle, its two setups, results and diff. */
  get compare() {
    const page = this.page;
    return {
      toggle: page.getByTestId("compare"),
      setupA: page.getByTestId("setup-a"),
      setupB: page.getByTestId("setup-b"),
      containerB: page.getByLabel("Container of B"),
      optionB: (id: string) => page.getByTestId(`b-option-${id}`),
      resultA: page.getByTestId("result-a"),
      resultB: page.getByTestId("result-b"),
      diffTab: (name: string) => page.getByTestId("diff-tab").and(page.locator(`[data-name="${name}"]`)),
      summary: page.getByTestId("diff-summary"),
      diff: page.getByTestId("diff"),
    };
  }

  /** The texts in the compare view's diff editor: A (original) and B (modified). */
  async diffTexts(): Promise<{ a: string; b: string }> {
    return this.page.evaluate(() => {
      const model = (window as any).monaco.editor.getDiffEditors()[0].getModel();
      return { a: model.original.getValue(), b: model.modified.getValue() };
    });
  }

  /** Runs both setups of the compare view and waits for both statuses. */
  async runCompare() {
    await this.run.click();
    await expect(this.compare.resultA.getByTestId("status")).toBeVisible({ timeout: 60_000 });
    await expect(this.compare.resultB.getByTestId("status")).toBeVisible({ timeout: 60_000 });
  }

  /** `light` or `dark`: what the page shows (`<html data-theme>`). */
  async theme(): Promise<string | null> {
    return this.page.locator("html").getAttribute("data-theme");
  }

  /** The Monaco theme of the first editor (`vs` or `vs-dark`). */
  async monacoTheme(): Promise<string> {
    return this.page.evaluate(() => {
      const classes = document.querySelector(".monaco-editor")?.classList ?? [];
      return ["vs-dark", "hc-black", "vs"].find((t) => [...classes].includes(t)) ?? "";
    });
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

  /** The count of problems on a file's tab. */
  diagnosticCount(path: string): Locator {
    return this.page.getByTestId("file-tab").and(this.page.locator(`[data-path="${path}"]`)).getByTestId("diag-count");
  }

  /** The source editor's cursor. */
  async cursor(): Promise<{ lineNumber: number; column: number }> {
    return this.page.evaluate(() => {
      const p = (window as any).monaco.editor.getEditors()[0].getPosition();
      return { lineNumber: p.lineNumber, column: p.column };
    });
  }

  /** Puts the source editor's cursor on a line, as a click there would. */
  async setCursor(line: number) {
    await this.page.evaluate((lineNumber) => {
      const editor = (window as any).monaco.editor.getEditors()[0];
      editor.setPosition({ lineNumber, column: 1 });
      editor.focus();
    }, line);
  }

  /**
   * The lines of an editor carrying a decoration class: `source` (the input editor) or `asm`
   * (the assembly pane), as [line number, text] pairs.
   */
  async decoratedLines(which: "source" | "asm", className: string): Promise<[number, string][]> {
    return this.page.evaluate(
      ([which, className]) => {
        const editors = (window as any).monaco.editor.getEditors();
        const editor =
          which === "source"
            ? editors[0]
            : editors.find((e: any) => e.getContainerDomNode().closest('[data-testid="asm-editor"]'));
        const model = editor.getModel();
        const lines = new Set<number>();
        for (const d of model.getAllDecorations()) {
          if (d.options.className === className) lines.add(d.range.startLineNumber);
        }
        return [...lines].sort((a, b) => a - b).map((l) => [l, model.getLineContent(l)] as [number, string]);
      },
      [which, className] as const,
    );
  }
}
