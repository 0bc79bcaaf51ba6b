// The assembly pane: gcc's assembly beside the source, a colour per source line on both sides,
// and the line pointed at in one pane highlighted in the other.
import { expect, test } from "@playwright/test";
import { Playground } from "../pages/playground";

const SOURCE = "int square(int x) {\n    return x * x;\n}\n\nint main(void) {\n    return square(3);\n}\n";

test("the assembly stands beside the source and highlights both ways", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("gcc");
  await app.option("assembly").check();
  await app.setEditorText(SOURCE);
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 9");

  // Beside the source: to its right, at the same height.
  await expect(app.asmPane).toBeVisible();
  await expect(app.asmEditor).toContainText("square:");
  const source = (await app.editor.boundingBox())!;
  const asm = (await app.asmEditor.boundingBox())!;
  expect(asm.x).toBeGreaterThanOrEqual(source.x + source.width - 2);
  expect(Math.abs(asm.y + asm.height - (source.y + source.height))).toBeLessThan(4);

  // Source line 2 and its instructions share a colour.
  const colour = "asm-c2";
  await expect.poll(() => app.decoratedLines("source", colour)).toEqual([[2, "    return x * x;"]]);
  expect((await app.decoratedLines("asm", colour)).map(([, text]) => text.trim())).toContain("imull\t%eax, %eax");

  // The cursor on line 2 highlights its instructions in the assembly...
  await app.setCursor(2);
  await expect
    .poll(async () => (await app.decoratedLines("asm", "asm-hl")).map(([, text]) => text.trim()))
    .toEqual(["movl\t-4(%rbp), %eax", "imull\t%eax, %eax"]);
  await app.screenshot("assembly-source-to-asm");

  // ...and pointing at `call square` highlights line 6 of the source.
  await app.asmEditor.locator(".view-line", { hasText: "call" }).hover();
  await expect.poll(() => app.decoratedLines("source", "asm-hl")).toEqual([[6, "    return square(3);"]]);
  await app.screenshot("assembly-asm-to-source");

  // Filters are toggles: with directives shown, .loc lines appear.
  await page.getByTestId("asm-filter-directives").uncheck();
  await expect(app.asmEditor).toContainText(".cfi_startproc");
  await page.getByTestId("asm-filter-directives").check();
  await expect(app.asmEditor).not.toContainText(".cfi_startproc");
});

// The app carries no demangler: the server sends each C++ name of the assembly with its
// readable form (RunResult.demangled), and the Demangle toggle swaps them. C gives the
// function a mangled name by hand (gcc is the image the tests build).
test("C++ names come demangled from the server and the toggle shows them as written", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("gcc");
  await app.option("assembly").check();
  await app.setEditorText("int _Z3addii(int a, int b) {\n    return a + b;\n}\n\nint main(void) {\n    return _Z3addii(2, 3);\n}\n");
  await app.runAndWait();
  await expect(app.status).toContainText("Exited with code 5");
  await expect(app.asmEditor).toContainText("add(int, int):");
  await expect(app.asmEditor).toContainText("call\tadd(int, int)");
  await page.getByTestId("asm-filter-demangle").uncheck();
  await expect(app.asmEditor).toContainText("_Z3addii:");
  await expect(app.asmEditor).not.toContainText("add(int, int)");
});
