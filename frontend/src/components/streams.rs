use std::sync::Arc;

use leptos::prelude::*;

use crate::api::RunOutput;

/// Standard output and standard error, as text.
#[component]
pub fn Streams(output: Arc<RunOutput>) -> impl IntoView {
    let pane = |name: &'static str, label: &'static str, bytes: &[u8]| {
        let empty = bytes.is_empty();
        let text = crate::format::strip_ansi(&String::from_utf8_lossy(bytes)).into_owned();
        view! {
            <div class="stream" class:empty=empty>
                <h2 class="stream-title">{label}</h2>
                // A named, focusable region: it scrolls, from the keyboard too.
                <pre class="stream-text" data-testid=name role="region" aria-label=label tabindex="0">
                    {text}
                </pre>
            </div>
        }
    };
    view! {
        <div class="streams">
            {pane("stdout", "Standard output", &output.stdout)}
            {pane("stderr", "Standard error", &output.stderr)}
        </div>
    }
}
