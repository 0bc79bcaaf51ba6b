//! The source editor's side of [`crate::links`]: diagnostics as markers on the open file, the
//! spot a click in the diagnostics list asks for, the line pointed at (for the assembly pane),
//! and the assembly pane's colours and highlight on the source lines.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

use super::diagnostics::for_file;
use crate::links::{colour_class, use_links};
use crate::monaco::{self, Editor};
use crate::store::use_store;

type EditorCell = StoredValue<Option<Editor>, LocalStorage>;

/// Once the editor exists: report the line pointed at, with the open file.
pub fn on_created(editor: &Editor, open_file: Memo<Option<String>>) {
    let links = use_links();
    let on_line = Closure::<dyn Fn(u32)>::new(move |line: u32| {
        let path = open_file.get_untracked();
        links.source_focus.set(path.filter(|_| line > 0).map(|p| (p, line)));
    });
    monaco::on_line_focus(editor, on_line.into_js_value().unchecked_ref());
}

/// The effects that keep the editor in step with the run and the assembly pane.
pub fn connect(
    editor: EditorCell,
    open_file: Memo<Option<String>>,
    content: impl Fn() -> String + 'static,
) {
    let store = use_store();
    let links = use_links();

    // Markers for the open file's diagnostics (after a run, a tab switch, new files).
    Effect::new(move |_| {
        let path = open_file.get().unwrap_or_default();
        store.revision.track();
        store.monaco_ready.track();
        let list = for_file(&path);
        let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
        editor.with_value(|e| {
            if let Some(e) = e {
                monaco::set_diagnostics(e, &json);
            }
        });
    });

    // A spot picked in the diagnostics list, once its file is the open one.
    Effect::new(move |_| {
        let Some(spot) = links.reveal.get() else { return };
        if open_file.get().as_deref() != Some(spot.path.as_str()) {
            return;
        }
        editor.with_value(|e| {
            if let Some(e) = e {
                let text = content();
                if e.get_value() != text {
                    e.set_value(&text);
                }
                monaco::reveal_position(e, spot.line, spot.column);
            }
        });
        links.reveal.set(None);
    });

    // The assembly pane's colours, and the source line of the instruction pointed at.
    Effect::new(move |_| {
        let marks = links.source_marks.get();
        let open = open_file.get().unwrap_or_default();
        store.monaco_ready.track();
        let here = marks.path == open;
        let colours: Vec<(u32, String)> = if here {
            marks.colours.iter().map(|&(line, _)| (line, colour_class(line))).collect()
        } else {
            Vec::new()
        };
        let highlight: Vec<(u32, &str)> =
            marks.highlight.filter(|_| here).map(|l| vec![(l, "asm-hl")]).unwrap_or_default();
        editor.with_value(|e| {
            if let Some(e) = e {
                let json = serde_json::to_string(&colours).unwrap_or_else(|_| "[]".into());
                monaco::set_line_classes(e, "asm-colours", &json);
                let json = serde_json::to_string(&highlight).unwrap_or_else(|_| "[]".into());
                monaco::set_line_classes(e, "asm-highlight", &json);
                if let Some((line, _)) = highlight.first() {
                    monaco::reveal_line(e, *line);
                }
            }
        });
    });
}
