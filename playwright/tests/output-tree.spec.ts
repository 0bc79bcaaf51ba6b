// Large outputs as a file tree (issue #15): squashfs answers listed at once in wasm, each file
// decompressed only when it is opened. The first tests run real microVMs (the `unpack` container,
// whose metadata says `output_tree = true`, and busybox, which asks for squashfs after a run with
// many outputs); the last one measures a synthetic 2,000-file / 50 MiB answer in both formats
// (docs/PERFORMANCE.md, "Output trees").
import { gzipSync } from "node:zlib";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { Playground } from "../pages/playground";

/** Runs, and answers the URL the app asked (`?archive=squashfs` or not). */
async function runAsked(page: Page): Promise<string> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes("/api/v1/run"), { timeout: 60_000 }),
    page.getByTestId("run").click(),
  ]);
  return response.url();
}

test("an unpacked archive shows as a tree: folders, filter, open a file, download all", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("unpack");
  expect(await runAsked(page)).toContain("archive=squashfs");
  await expect(app.status).toContainText("Exited with code 0");
  await expect(app.stdout).toContainText("207 files in 17 folders");

  const tree = page.getByTestId("output-tree");
  await expect(page.getByTestId("tree-summary")).toContainText("207 output files");
  // Many entries: folders start closed, so only the top one shows.
  const files = page.getByTestId("tree-file");
  const dir = (path: string) => page.getByTestId("tree-dir").and(page.locator(`[data-path="${path}"]`));
  await expect(dir("site")).toHaveAttribute("aria-expanded", "false");
  await expect(files).toHaveCount(0);
  await dir("site").click();
  await dir("site/guide").click();
  await dir("site/guide/chapter-07").click();
  await expect(dir("site/guide/chapter-07")).toContainText("KiB");
  await expect(files).toHaveCount(1 + 16 + 1); // index.html, the chapter's 16 sections and README.md
  // Nothing decoded yet; opening a file decodes that file only.
  await expect(tree).toHaveAttribute("data-decoded", "0");
  await files.and(page.locator('[data-path="site/guide/chapter-07/section-03.html"]')).click();
  await expect(page.getByTestId("tree-open")).toHaveText("site/guide/chapter-07/section-03.html");
  await expect(page.getByTestId("output-html")).toHaveAttribute("srcdoc", /Chapter 07, section 03/);
  await expect(tree).toHaveAttribute("data-decoded", "1");
  // Closing a folder hides what it holds.
  await dir("site/guide/chapter-07").click();
  await expect(files).toHaveCount(1);

  // The filter searches every folder, open or not.
  const filter = page.getByTestId("tree-filter");
  await filter.fill("section-16");
  await expect(files).toHaveCount(12);
  await filter.fill("LOGO");
  await expect(files).toHaveCount(1);
  await files.click();
  await expect(page.getByTestId("output-image")).toBeVisible();
  await expect(tree).toHaveAttribute("data-decoded", "2");
  await filter.fill("no such name");
  await expect(files).toHaveCount(0);
  await filter.fill("");
  await app.screenshot("output-tree");

  // Download all: the squashfs image as it arrived; unsquashfs lists it.
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-all").click()]);
  expect(download.suggestedFilename()).toBe("output.sqfs");
  const saved = join(mkdtempSync(join(tmpdir(), "pe-tree-")), "output.sqfs");
  await download.saveAs(saved);
  expect(readFileSync(saved).subarray(0, 4).toString("latin1")).toBe("hsqs");
  const listing = execFileSync("unsquashfs", ["-l", saved]).toString();
  expect(listing).toContain("output/site/guide/chapter-12/section-16.html");
  expect(listing).toContain("stdout");
});

test("after a run with many outputs, the next run of that container asks for squashfs", async ({ page }) => {
  const app = new Playground(page);
  await app.open();
  await app.pickContainer("busybox");
  await app.setEditorText('for i in $(seq 1 40); do echo "file $i" > /output/f$i.txt; done\necho made\n');
  expect(await runAsked(page)).not.toContain("archive=squashfs");
  await expect(app.stdout).toContainText("made");
  // The first run was cpio, shown as tabs, as before.
  await expect(page.getByTestId("output-tab")).toHaveCount(40);
  await app.setEditorText('for i in $(seq 1 40); do echo "again $i" > /output/f$i.txt; done\necho again\n');
  expect(await runAsked(page)).toContain("archive=squashfs");
  await expect(app.stdout).toContainText("again");
  await expect(page.getByTestId("tree-summary")).toContainText("40 output files");
  await page.getByTestId("tree-filter").fill("f17.");
  await page.getByTestId("tree-file").click();
  await expect(page.getByTestId("output-text")).toContainText("again 17");
  // A run with few outputs goes back to cpio and tabs.
  await app.setEditorText("echo one > /output/one.txt\n");
  expect(await runAsked(page)).toContain("archive=squashfs");
  await expect(page.getByTestId("output-tab")).toHaveCount(1);
  expect(await runAsked(page)).not.toContain("archive=squashfs");
  await expect(page.getByTestId("output-tab")).toHaveCount(1);
});

/** A directory with `stdout`, `stderr` and `output/` holding `files` text files, 50 a folder. */
function makeTree(files: number, totalBytes: number): string {
  const root = mkdtempSync(join(tmpdir(), "pe-big-"));
  writeFileSync(join(root, "stdout"), `${files} files\n`);
  writeFileSync(join(root, "stderr"), "");
  const perDir = 50;
  const size = Math.floor(totalBytes / files);
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"];
  let seed = 1;
  for (let i = 0; i < files; i++) {
    const dir = join(root, "output", `d${String(Math.floor(i / perDir)).padStart(3, "0")}`);
    if (i % perDir === 0) mkdirSync(dir, { recursive: true });
    const parts: string[] = [];
    let n = 0;
    while (n < size) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; // exact in 32 bits: no repeating files
      // Words and numbers: gzip takes it to about 40 %, like logs or generated text.
      const w = words[(seed >>> 28) % words.length] + ((seed >>> 8) % 1_000_000) + ((seed >>> 4) % 7 === 0 ? "\n" : " ");
      parts.push(w);
      n += w.length;
    }
    writeFileSync(join(dir, `f${String(i).padStart(5, "0")}.txt`), parts.join("").slice(0, size));
  }
  return root;
}

/** The archive form's answer: `<u32le len><RunResult JSON><archive>`. */
function frame(archive: Buffer): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      status: "exited", exit_code: 0, argv: ["sh"], image: { id: "busybox", digest: "sha256:00" },
      backend: { kind: "microvm" }, cached: false, timings_ms: { queue: 0, boot: 1, run: 2, total: 3 },
      usage: { user_ms: 0, sys_ms: 0, max_rss_kib: 0 },
      truncated: { stdout: false, stderr: false, files: false },
    }),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([len, header, archive]);
}

/** Serves `answer` for the next run and measures, in the page, from the answer's last byte to
 * the output shown (the tree's summary, or the last tab), plus the wasm and JS heap sizes. */
async function measure(page: Page, answer: Buffer, shown: string) {
  await page.unroute("**/api/v1/run*");
  await page.route("**/api/v1/run*", (route) =>
    route.fulfill({ status: 200, contentType: "application/x-pe-archive", body: answer }),
  );
  await page.evaluate(() => {
    const w = window as any;
    w.peArrived = 0;
    if (!w.peWrapped) {
      w.peWrapped = true;
      const original = Response.prototype.arrayBuffer;
      Response.prototype.arrayBuffer = async function () {
        const buffer = await original.call(this);
        if (this.url.includes("/api/v1/run")) w.peArrived = performance.now();
        return buffer;
      };
    }
  });
  await page.getByTestId("run").click();
  const handle = await page.waitForFunction(
    (selector) => {
      const w = window as any;
      return w.peArrived > 0 && document.querySelector(selector) ? performance.now() - w.peArrived : false;
    },
    shown,
    { polling: "raf", timeout: 60_000 },
  );
  const ms = (await handle.jsonValue()) as number;
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("HeapProfiler.collectGarbage");
  const { usedSize: heap } = await cdp.send("Runtime.getHeapUsage");
  await cdp.detach();
  const wasm = await page.evaluate(() => (window as any).peWasmMemory.buffer.byteLength);
  return { ms: Math.round(ms), wasmMiB: +(wasm / 2 ** 20).toFixed(1), jsHeapMiB: +(heap / 2 ** 20).toFixed(1) };
}

test("2,000 output files / 50 MiB: time to show and memory, cpio vs squashfs", async ({ browser }) => {
  test.setTimeout(300_000);
  const files = Number(process.env.PE_TREE_FILES ?? 2000);
  const root = makeTree(files, Number(process.env.PE_TREE_BYTES ?? 50 * 2 ** 20));
  const sqfs = join(root, "..", `${root.split("/").pop()}.sqfs`);
  execFileSync("mksquashfs", [root, sqfs, "-comp", "gzip", "-b", "131072", "-noappend", "-no-duplicates", "-no-xattrs", "-all-root", "-quiet", "-no-progress"]);
  const cpio = execFileSync("sh", ["-c", "find stdout stderr output | LC_ALL=C sort | cpio -o -H newc --quiet"], {
    cwd: root,
    maxBuffer: 1 << 30,
  });
  const answers = { cpio: frame(cpio), squashfs: frame(readFileSync(sqfs)) };
  const results: Record<string, object> = {};
  // PE_TREE_FORMATS=squashfs measures one form only (10,000 files as cpio tabs take minutes).
  const formats = (process.env.PE_TREE_FORMATS ?? "cpio,squashfs").split(",") as ("cpio" | "squashfs")[];
  for (const format of formats) {
    // A fresh page each time, so one's memory does not count in the other's.
    const page = await browser.newPage();
    const app = new Playground(page);
    await app.open();
    await app.pickContainer("busybox");
    const shown = format === "squashfs" ? "[data-testid=tree-summary]" : `[data-testid=output-tab]:nth-child(${files})`;
    const figures = await measure(page, answers[format], shown);
    // Bytes on the wire with transport compression (gzip -6, as a server or proxy would send it).
    const gzipMiB = +(gzipSync(answers[format], { level: 6 }).length / 2 ** 20).toFixed(1);
    results[format] = { answerMiB: +(answers[format].length / 2 ** 20).toFixed(1), gzipMiB, ...figures };
    if (format === "squashfs") {
      await expect(page.getByTestId("tree-summary")).toContainText(`${files} output files`);
      // Opening one file decodes that file only, and the page answers at once.
      const started = Date.now();
      await page.getByTestId("tree-filter").fill(`f${String(Math.floor(files / 2)).padStart(5, "0")}`);
      await page.getByTestId("tree-file").click();
      await expect(page.getByTestId("output-text")).toContainText(/\w/);
      await expect(page.getByTestId("output-tree")).toHaveAttribute("data-decoded", "1");
      (results[format] as any).openOneFileMs = Date.now() - started;
      await page.screenshot({ path: "test-results/screens/output-tree-2000.png" });
    }
    await page.close();
  }
  console.log(`output tree, ${files} files:`, JSON.stringify(results));
  test.info().annotations.push({ type: "output-tree", description: JSON.stringify(results) });
  // The bound, on an idle machine (docs/PERFORMANCE.md has the figures and the load).
  // The default allows for a loaded machine (2 cores shared with builds); PE_TREE_MAX_MS=300 checks
  // the bound on an idle one.
  if (results.squashfs) {
    expect((results.squashfs as { ms: number }).ms).toBeLessThan(Number(process.env.PE_TREE_MAX_MS ?? 1500));
  }
});
