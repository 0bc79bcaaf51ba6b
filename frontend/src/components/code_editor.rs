use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::format::language_for;
use crate::monaco::{self, Editor};
use crate::store::{Store, use_store};

/// Loads Monaco once for the page; sets `store.monaco_ready`.
fn load_monaco(store: Store) {
    leptos::task::spawn_local(async move {
        match JsFuture::from(monaco::load_monaco()).await {
            Ok(_) => store.monaco_ready.set(true),
            Err(e) => store.notice.set(Some(format!(
                "The editor could not be loaded: {}",
                e.as_string().unwrap_or_else(|| format!("{e:?}"))
            ))),
        }
    });
}

/// The Monaco editor showing the open input file. One editor for all tabs: switching tabs
/// swaps its text and language.
#[component]
pub fn CodeEditor() -> impl IntoView {
    let store = use_store();
    load_monaco(store);
    let host = NodeRef::<html::Div>::new();
    let editor = StoredValue::new_local(None::<Editor>);
    let open_file = Memo::new(move |_| {
        let active = store.active.get();
        store.files.with(|f| f.get(active).map(|f| f.path.clone()))
    });
    let content = move || {
        let active = store.active.get_untracked();
        store.files.with_untracked(|f| f.get(active).map(|f| f.content.clone()).unwrap_or_default())
    };

    // Create the editor once Monaco and the element are there.
    Effect::new(move |_| {
        if !store.monaco_ready.get() || editor.with_value(Option::is_some) {
            return;
        }
        let Some(element) = host.get() else { return };
        let on_change = Closure::<dyn Fn(String)>::new(move |text: String| {
            let active = store.active.get_untracked();
            store.files.maybe_update(|files| match files.get_mut(active) {
                Some(file) if file.content != text => {
                    file.content = text;
                    true
                }
                _ => false,
            });
        });
        let on_run = Closure::<dyn Fn()>::new(move || store.run());
        let path = open_file.get_untracked().unwrap_or_default();
        let created = monaco::create_editor(
            &element,
            &content(),
            language_for(&path),
            false,
            "Input file",
            on_change.into_js_value().unchecked_ref(),
            on_run.into_js_value().unchecked_ref(),
        );
        monaco::set_theme(monaco::theme(store.dark.get_untracked()));
        super::editor_links::on_created(&created, open_file);
        editor.set_value(Some(created));
    });
    super::editor_links::connect(editor, open_file, content);

    // Show the open file when the tab changes or the files are replaced.
    Effect::new(move |_| {
        store.active.track();
        store.revision.track();
        store.monaco_ready.track();
        editor.with_value(|e| {
            if let Some(e) = e {
                let text = content();
                if e.get_value() != text {
                    e.set_value(&text);
                }
            }
        });
    });
    Effect::new(move |_| {
        let path = open_file.get().unwrap_or_default();
        store.monaco_ready.track();
        editor.with_value(|e| {
            if let Some(e) = e {
                monaco::set_language(e, language_for(&path));
            }
        });
    });
    Effect::new(move |_| {
        let dark = store.dark.get();
        if store.monaco_ready.get() {
            monaco::set_theme(monaco::theme(dark));
        }
    });
    on_cleanup(move || {
        editor.with_value(|e| {
            if let Some(e) = e {
                e.dispose();
            }
        });
    });

    view! {
        <div class="editor-wrap">
            <div class="editor" data-testid="editor" node_ref=host></div>
            <Show when=move || !store.monaco_ready.get()>
                <p class="editor-loading">"Loading the editor…"</p>
            </Show>
        </div>
    }
}
