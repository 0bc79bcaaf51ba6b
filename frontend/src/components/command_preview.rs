use leptos::prelude::*;

use crate::format::shell_join;
use crate::store::Side;

/// The exact command line the options render to (the same function the server runs), or why
/// they do not render.
#[component]
pub fn CommandPreview(side: Side) -> impl IntoView {
    let testid = format!("{}command-preview", side.prefix);
    view! {
        <div class="preview" data-testid=testid aria-label="Command line" aria-live="polite">
            {move || match side.preview.get() {
                Ok(rendered) => {
                    let env = rendered
                        .env
                        .iter()
                        .chain(side.env.with(|e| crate::format::parse_env(e).unwrap_or_default()).iter())
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    view! {
                        // Focusable: a long command line scrolls, from the keyboard too.
                        <pre class="command" data-testid="command" tabindex="0">
                            <span class="prompt" aria-hidden="true">
                                "$ "
                            </span>
                            {shell_join(&rendered.argv)}
                        </pre>
                        {(!env.is_empty())
                            .then(|| {
                                view! {
                                    <p class="command-env">
                                        <span class="muted">"env: "</span>
                                        {env}
                                    </p>
                                }
                            })}
                    }
                        .into_any()
                }
                Err(problem) => {
                    view! {
                        <p class="problem" role="alert" data-testid="option-error">
                            {problem.message}
                        </p>
                    }
                        .into_any()
                }
            }}
        </div>
    }
}
