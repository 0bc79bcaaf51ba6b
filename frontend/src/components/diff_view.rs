use leptos::html;
use leptos::prelude::*;

use crate::compare::Pair;
use crate::monaco::{self, DiffEditor};
use crate::store::use_store;

/// Monaco's diff editor (read-only), showing a pair of outputs: A on the left, B on the right.
#[component]
pub fn DiffView(pair: Signal<Pair>) -> impl IntoView {
    let store = use_store();
    let host = NodeRef::<html::Div>::new();
    let editor = StoredValue::new_local(None::<DiffEditor>);
    Effect::new(move |_| {
        let pair = pair.get();
        if !store.monaco_ready.get() {
            return;
        }
        let Some(element) = host.get() else { return };
        if editor.with_value(Option::is_none) {
            editor.set_value(Some(monaco::create_diff_editor(&element, "Output diff")));
        }
        editor.with_value(|e| {
            if let Some(e) = e {
                monaco::set_diff_texts(e, &pair.a, &pair.b, pair.language);
            }
        });
    });
    on_cleanup(move || {
        editor.with_value(|e| {
            if let Some(e) = e {
                monaco::dispose_diff_editor(e);
            }
        });
    });
    view! { <div class="diff-view" data-testid="diff" node_ref=host></div> }
}
