// Page Objects for the static site: the tool index and a tool's page.
import type { Locator, Page } from "@playwright/test";

export class ToolIndex {
  constructor(readonly page: Page) {}

  async open() {
    await this.page.goto("/tools");
  }

  tool(name: string): Locator {
    return this.page.getByRole("link", { name, exact: true });
  }
}

export class ToolPage {
  readonly playground: Locator;
  readonly snippet: Locator;

  constructor(readonly page: Page) {
    this.playground = page.locator("iframe.playground");
    this.snippet = page.locator("pre code").last();
  }

  example(name: string): Locator {
    return this.page.getByRole("link", { name, exact: true });
  }
}
