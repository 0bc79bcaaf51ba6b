//! Bindings to the Monaco editor through `js/monaco.js`, a few lines of glue over Monaco's AMD
//! build (served from `/vs`, copied there by Trunk from the monaco-editor npm package).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/monaco.js")]
extern "C" {
    /// Loads Monaco once; the promise resolves when it is ready.
    #[wasm_bindgen(js_name = loadMonaco)]
    pub fn load_monaco() -> js_sys::Promise;

    /// A Monaco code editor instance.
    #[derive(Debug, Clone)]
    pub type Editor;

    #[wasm_bindgen(js_name = createEditor)]
    pub fn create_editor(
        element: &web_sys::HtmlElement,
        value: &str,
        language: &str,
        read_only: bool,
        label: &str,
        on_change: &js_sys::Function,
        on_run: &js_sys::Function,
    ) -> Editor;

    #[wasm_bindgen(js_name = setLanguage)]
    pub fn set_language(editor: &Editor, language: &str);

    /// `vs` or `vs-dark`, for every editor on the page.
    #[wasm_bindgen(js_name = setTheme)]
    pub fn set_theme(theme: &str);

    #[wasm_bindgen(method, js_name = getValue)]
    pub fn get_value(this: &Editor) -> String;

    #[wasm_bindgen(method, js_name = setValue)]
    pub fn set_value(this: &Editor, value: &str);

    #[wasm_bindgen(method)]
    pub fn layout(this: &Editor);

    #[wasm_bindgen(method)]
    pub fn focus(this: &Editor);

    #[wasm_bindgen(method)]
    pub fn dispose(this: &Editor);

    /// A Monaco diff editor instance (read-only).
    #[derive(Debug, Clone)]
    pub type DiffEditor;

    #[wasm_bindgen(js_name = createDiffEditor)]
    pub fn create_diff_editor(element: &web_sys::HtmlElement, label: &str) -> DiffEditor;

    #[wasm_bindgen(js_name = setDiffTexts)]
    pub fn set_diff_texts(diff: &DiffEditor, original: &str, modified: &str, language: &str);

    #[wasm_bindgen(js_name = disposeDiffEditor)]
    pub fn dispose_diff_editor(diff: &DiffEditor);
}

/// The Monaco theme for the colour scheme.
pub fn theme(dark: bool) -> &'static str {
    if dark { "vs-dark" } else { "vs" }
}

#[wasm_bindgen(module = "/js/monaco.js")]
extern "C" {
    /// Diagnostics as markers: JSON `[{line, column, end_line?, end_column?, severity, message}]`.
    #[wasm_bindgen(js_name = setDiagnostics)]
    pub fn set_diagnostics(editor: &Editor, json: &str);

    /// Cursor at line:column, scrolled into view, focused.
    #[wasm_bindgen(js_name = revealPosition)]
    pub fn reveal_position(editor: &Editor, line: u32, column: u32);

    #[wasm_bindgen(js_name = revealLine)]
    pub fn reveal_line(editor: &Editor, line: u32);

    /// Whole-line CSS classes, one set per key: JSON `[[line, "class"], ...]`.
    #[wasm_bindgen(js_name = setLineClasses)]
    pub fn set_line_classes(editor: &Editor, key: &str, json: &str);

    /// `callback(line)` with the hovered line, else the cursor's (0 for none), on each change.
    #[wasm_bindgen(js_name = onLineFocus)]
    pub fn on_line_focus(editor: &Editor, callback: &js_sys::Function);
}
