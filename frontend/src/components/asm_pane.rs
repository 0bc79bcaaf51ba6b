use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use leptos::html;
use leptos::prelude::*;
use shared::asm::{self, Assembly, Filters};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

use crate::links::{SourceMarks, colour_class, use_links};
use crate::monaco::{self, Editor};
use crate::store::use_store;

/// The last run's assembly, when its container's metadata has an `[assembly]` table and the run
/// left that file.
#[derive(Clone, PartialEq)]
struct AssemblyText {
    text: String,
    /// The source file it belongs to, and the working directory.
    source: String,
    cwd: String,
    /// Its C++ names, readable, as the server demangled them (the app carries no demangler).
    demangled: Arc<BTreeMap<String, String>>,
}

fn assembly_text() -> Memo<Option<AssemblyText>> {
    let store = use_store();
    Memo::new(move |_| {
        store.finished.with(|f| {
            let f = f.as_ref()?;
            let meta = f.meta.as_ref()?;
            let spec = meta.assembly.as_ref()?;
            let (_, bytes) = f.output.files.iter().find(|(path, _)| *path == spec.file)?;
            Some(AssemblyText {
                text: String::from_utf8_lossy(bytes).into_owned(),
                source: spec.source.clone(),
                cwd: meta.run.cwd.clone(),
                demangled: Arc::new(f.output.result.demangled.clone()),
            })
        })
    })
}

/// The assembly beside the source, in a read-only editor, when the last run made one.
#[component]
pub fn AsmPane() -> impl IntoView {
    let links = use_links();
    let text = assembly_text();
    let assembly = Memo::new(move |_| {
        let filters = links.asm_filters.get();
        text.with(|t| {
            t.as_ref().map(|t| {
                let demangle = |name: &str| t.demangled.get(name).cloned();
                let parsed = asm::parse_with(&t.text, &t.source, &t.cwd, &filters, &demangle);
                (Arc::new(parsed), t.source.clone())
            })
        })
    });
    let shown = Memo::new(move |_| assembly.with(Option::is_some));
    view! {
        <Show when=move || shown.get()>
            <AsmView assembly />
        </Show>
    }
}

/// The filter toggles: each one hides (or, for demangle and trim, rewrites) lines.
#[component]
fn FilterToggles() -> impl IntoView {
    let links = use_links();
    type Field = fn(&mut Filters) -> &mut bool;
    let toggles: [(&str, &str, Field); 6] = [
        ("directives", "Directives", |f| &mut f.directives),
        ("labels", "Unused labels", |f| &mut f.labels),
        ("comment_only", "Comments", |f| &mut f.comment_only),
        ("library_code", "Library code", |f| &mut f.library_code),
        ("demangle", "Demangle", |f| &mut f.demangle),
        ("trim", "Trim spaces", |f| &mut f.trim),
    ];
    let boxes = toggles
        .into_iter()
        .map(|(id, label, field)| {
            let checked = move || {
                let mut filters = links.asm_filters.get();
                *field(&mut filters)
            };
            view! {
                <label class="asm-filter">
                    <input
                        type="checkbox"
                        data-testid=format!("asm-filter-{id}")
                        prop:checked=checked
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            links.asm_filters.update(|f| *field(f) = on);
                        }
                    />
                    {label}
                </label>
            }
        })
        .collect_view();
    view! {
        <fieldset class="asm-filters">
            <legend>"Filter"</legend>
            {boxes}
        </fieldset>
    }
}

/// The pane itself: toggles and the editor, linked to the source editor both ways.
#[component]
fn AsmView(assembly: Memo<Option<(Arc<Assembly>, String)>>) -> impl IntoView {
    let store = use_store();
    let links = use_links();
    let host = NodeRef::<html::Div>::new();
    let editor = StoredValue::new_local(None::<Editor>);
    // The assembly on screen, for the editor's callbacks.
    let current = StoredValue::new(None::<(Arc<Assembly>, String)>);

    // The highlight in this pane: the instructions of one source line.
    let highlight = move |e: &Editor, source_line: Option<u32>, reveal: bool| {
        let lines = match (source_line, current.get_value()) {
            (Some(line), Some((asm, source))) => asm.lines_for(&source, line),
            _ => Vec::new(),
        };
        let classes: Vec<(usize, &str)> = lines.iter().map(|&l| (l, "asm-hl")).collect();
        let json = serde_json::to_string(&classes).unwrap_or_else(|_| "[]".into());
        monaco::set_line_classes(e, "asm-highlight", &json);
        if reveal && let Some(first) = lines.first() {
            monaco::reveal_line(e, *first as u32);
        }
    };

    Effect::new(move |_| {
        if !store.monaco_ready.get() || editor.with_value(Option::is_some) {
            return;
        }
        let Some(element) = host.get() else { return };
        let ignore_change = Closure::<dyn Fn(String)>::new(|_: String| {});
        let on_run = Closure::<dyn Fn()>::new(move || store.run());
        let created = monaco::create_editor(
            &element,
            "",
            "plaintext",
            true,
            "Assembly",
            ignore_change.into_js_value().unchecked_ref(),
            on_run.into_js_value().unchecked_ref(),
        );
        // Pointing at an instruction highlights its source line (there and here).
        let on_line = Closure::<dyn Fn(u32)>::new(move |line: u32| {
            let source_line = current.with_value(|c| {
                let (asm, _) = c.as_ref()?;
                asm.lines.get((line as usize).checked_sub(1)?)?.source.as_ref().map(|s| s.line)
            });
            links.source_marks.update(|m| m.highlight = source_line);
            editor.with_value(|e| {
                if let Some(e) = e {
                    highlight(e, source_line, false);
                }
            });
        });
        monaco::on_line_focus(&created, on_line.into_js_value().unchecked_ref());
        editor.set_value(Some(created));
    });

    // New assembly (a run, a filter): the text, and a colour per source line on both sides.
    Effect::new(move |_| {
        let Some((asm, source)) = assembly.get() else { return };
        store.monaco_ready.track();
        host.track();
        current.set_value(Some((asm.clone(), source.clone())));
        let text: Vec<&str> = asm.lines.iter().map(|l| l.text.as_str()).collect();
        let mut colours = Vec::new();
        let mut source_lines = BTreeSet::new();
        for (i, line) in asm.lines.iter().enumerate() {
            if let Some(s) = line.source.as_ref().filter(|s| s.file == source) {
                colours.push((i + 1, colour_class(s.line)));
                source_lines.insert(s.line);
            }
        }
        editor.with_value(|e| {
            if let Some(e) = e {
                e.set_value(&text.join("\n"));
                let json = serde_json::to_string(&colours).unwrap_or_else(|_| "[]".into());
                monaco::set_line_classes(e, "asm-colours", &json);
                monaco::set_line_classes(e, "asm-highlight", "[]");
            }
        });
        links.source_marks.set(SourceMarks {
            path: source,
            colours: source_lines.into_iter().map(|l| (l, l)).collect(),
            highlight: None,
        });
    });

    // Pointing at a source line highlights its instructions.
    Effect::new(move |_| {
        let focus = links.source_focus.get();
        let source = current.with_value(|c| c.as_ref().map(|(_, s)| s.clone()));
        let line = focus.filter(|(path, _)| Some(path) == source.as_ref()).map(|(_, l)| l);
        editor.with_value(|e| {
            if let Some(e) = e {
                highlight(e, line, true);
            }
        });
    });

    on_cleanup(move || {
        links.source_marks.set(SourceMarks::default());
        editor.with_value(|e| {
            if let Some(e) = e {
                e.dispose();
            }
        });
    });

    view! {
        <section class="asm-pane" aria-label="Assembly" data-testid="asm-pane">
            <div class="asm-bar">
                <h2 class="stream-title">"Assembly"</h2>
                <FilterToggles />
            </div>
            <div class="asm-editor-wrap">
                <div class="asm-editor" data-testid="asm-editor" node_ref=host></div>
            </div>
        </section>
    }
}
