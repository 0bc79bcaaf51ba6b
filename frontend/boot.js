// Starts the app. The server's Content-Security-Policy allows scripts from 'self' only, so this
// static module replaces Trunk's inline loader; Trunk.toml's pattern_script puts the hashed
// names of the wasm-bindgen module and the wasm file in this script's query string.
// A stored theme choice (src/theme.rs) applies at once, before the app has loaded.
try {
  const theme = localStorage.getItem('pe.theme');
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
} catch {}
const params = new URL(import.meta.url).searchParams;
const { default: init } = await import(params.get('js'));
const wasm = await init({ module_or_path: params.get('wasm') });
// The wasm memory, for measurements (playwright/tests/output-tree.spec.ts reads its size).
globalThis.peWasmMemory = wasm.memory;
