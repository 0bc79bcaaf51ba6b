use leptos::prelude::*;
use shared::meta::View;

use crate::browser;
use crate::format;

/// One output file, shown the way its view says: text, an image (SVG too, always as an image so
/// its scripts never run), HTML in a sandboxed frame, a hex dump, or just a download link.
#[component]
pub fn OutputViewer(path: String, data: Vec<u8>, view: View) -> impl IntoView {
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let media_type = match view {
        View::Svg => "image/svg+xml",
        View::Html => "text/html",
        View::Text => "text/plain;charset=utf-8",
        _ => format::media_type(&path),
    };
    let url = browser::blob_url(&data, media_type);
    if let Some(url) = url.clone() {
        on_cleanup(move || browser::revoke_url(&url));
    }
    let download = url.clone().map(|url| {
        view! {
            <a class="button download" href=url download=name.clone() data-testid="download">
                {format!("Download {name} ({})", format::bytes(data.len()))}
            </a>
        }
    });
    let body = match view {
        View::Text => {
            view! { <ReadOnlyCode text=String::from_utf8_lossy(&data).into_owned() path=path.clone() /> }
                .into_any()
        }
        View::Image | View::Svg => {
            view! { <img class="file-image" data-testid="output-image" src=url alt=path.clone() /> }
                .into_any()
        }
        View::Html => view! {
            <iframe
                class="file-html"
                data-testid="output-html"
                sandbox=""
                title=path.clone()
                srcdoc=String::from_utf8_lossy(&data).into_owned()
            ></iframe>
        }
        .into_any(),
        View::Hex => view! {
            <pre class="file-hex" data-testid="output-hex" tabindex="0">
                {format::hex_dump(&data)}
            </pre>
        }
        .into_any(),
        View::Download => ().into_any(),
    };
    view! {
        {body}
        <p class="viewer-actions">{download}</p>
    }
}

/// A text output file in a read-only Monaco editor (with the language of its extension).
#[component]
fn ReadOnlyCode(text: String, path: String) -> impl IntoView {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let store = crate::store::use_store();
    let host = NodeRef::<leptos::html::Div>::new();
    let editor = StoredValue::new_local(None::<crate::monaco::Editor>);
    let source = StoredValue::new((text, path));
    Effect::new(move |_| {
        if !store.monaco_ready.get() || editor.with_value(Option::is_some) {
            return;
        }
        let Some(element) = host.get() else { return };
        let (text, path) = source.get_value();
        let ignore_change = Closure::<dyn Fn(String)>::new(|_: String| {});
        let ignore_run = Closure::<dyn Fn()>::new(|| {});
        let created = crate::monaco::create_editor(
            &element,
            &text,
            format::language_for(&path),
            true,
            &format!("Output file {path}"),
            ignore_change.into_js_value().unchecked_ref(),
            ignore_run.into_js_value().unchecked_ref(),
        );
        editor.set_value(Some(created));
    });
    on_cleanup(move || {
        editor.with_value(|e| {
            if let Some(e) = e {
                e.dispose();
            }
        });
    });
    view! { <div class="file-code" data-testid="output-text" node_ref=host></div> }
}
