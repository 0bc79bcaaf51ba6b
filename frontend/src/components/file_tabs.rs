use leptos::prelude::*;

use super::file_actions::FileActions;
use super::file_tab::FileTab;
use crate::format;
use crate::playground::InputFile;
use crate::store::use_store;

/// The tabs of the input files, an add button and the open file's actions.
#[component]
pub fn FileTabs() -> impl IntoView {
    let store = use_store();
    // Which tab shows a name field.
    let renaming = RwSignal::new(None::<usize>);
    // Rebuilt when names change, not on every keystroke in the editor.
    let paths = Memo::new(move |_| {
        store.files.with(|f| f.iter().map(|f| f.path.clone()).collect::<Vec<_>>())
    });
    let add = move |_| {
        let ext = store
            .a
            .meta
            .with_untracked(|m| m.as_ref().and_then(|m| m.inputs.extensions.first().cloned()))
            .unwrap_or_else(|| "txt".into());
        let index = store.files.with_untracked(Vec::len);
        store.files.update(|files| {
            let taken: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            let path = format::unique_name("file", &ext, &taken);
            files.push(InputFile { path, content: String::new() });
        });
        store.active.set(index);
        renaming.set(Some(index));
    };
    view! {
        <div class="file-bar">
            <div class="file-tabs">
                // Only tabs in the tab list; the add button sits beside it.
                <div class="file-tabs" role="tablist" aria-label="Input files">
                    {move || {
                        paths
                            .get()
                            .into_iter()
                            .enumerate()
                            .map(|(index, path)| view! { <FileTab index path renaming /> })
                            .collect_view()
                    }}
                </div>
                <button
                    type="button"
                    class="add-file"
                    data-testid="add-file"
                    aria-label="Add a file"
                    title="Add a file"
                    on:click=add
                >
                    "+"
                </button>
            </div>
            <FileActions renaming />
        </div>
    }
}
