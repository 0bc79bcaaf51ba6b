//! Small wrappers over browser APIs the app needs besides HTTP: local storage, the address bar,
//! the clipboard, blob URLs, the clock and the colour scheme. Failures are quiet (a browser
//! without local storage still runs the app).

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen_futures::JsFuture;

fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

/// Milliseconds since the page started.
pub fn now_ms() -> f64 {
    window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

pub fn storage_get(key: &str) -> Option<String> {
    window()?.local_storage().ok()??.get_item(key).ok()?
}

pub fn storage_set(key: &str, value: &str) {
    if let Some(storage) = window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.set_item(key, value);
    }
}

pub fn storage_remove(key: &str) {
    if let Some(storage) = window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.remove_item(key);
    }
}

/// Puts the colour scheme on `<html data-theme>`, which the style sheet reads.
pub fn set_page_theme(dark: bool) {
    let root = window().and_then(|w| w.document()).and_then(|d| d.document_element());
    if let Some(root) = root {
        let _ = root.set_attribute("data-theme", if dark { "dark" } else { "light" });
    }
}

/// The path of the current page (`/`, `/l/abc`).
pub fn path() -> String {
    window().and_then(|w| w.location().pathname().ok()).unwrap_or_default()
}

/// A query parameter of the current page (`?container=gcc` -> `Some("gcc")`), decoded by the
/// browser's `URLSearchParams`.
pub fn query_param(name: &str) -> Option<String> {
    let search = window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
}

/// A percent-encoded URL component, decoded (`None` when it is not valid UTF-8).
pub fn decode_uri_component(text: &str) -> Option<String> {
    js_sys::decode_uri_component(text).ok()?.as_string()
}

/// Opens a URL in a new browsing context (from an embedded view: outside the iframe).
pub fn open_new_tab(url: &str) {
    if let Some(w) = window() {
        let _ = w.open_with_url_and_target(url, "_blank");
    }
}

/// `https://host:port` of the current page.
pub fn origin() -> String {
    window().and_then(|w| w.location().origin().ok()).unwrap_or_default()
}

/// Changes the address bar without loading anything.
pub fn replace_path(path: &str) {
    if let Some(history) = window().and_then(|w| w.history().ok()) {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(path));
    }
}

/// Copies text to the clipboard; false where the browser refuses (no secure context, no
/// permission).
pub async fn copy_text(text: &str) -> bool {
    let Some(navigator) = window().map(|w| w.navigator()) else { return false };
    let has_clipboard = js_sys::Reflect::get(&navigator, &"clipboard".into())
        .is_ok_and(|c| !c.is_undefined() && !c.is_null());
    if !has_clipboard {
        return false;
    }
    JsFuture::from(navigator.clipboard().write_text(text)).await.is_ok()
}

/// A `blob:` URL for bytes of the given media type. Revoke it with [`revoke_url`].
pub fn blob_url(data: &[u8], media_type: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(data));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(media_type);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

pub fn revoke_url(url: &str) {
    let _ = web_sys::Url::revoke_object_url(url);
}

/// Whether the system prefers a dark colour scheme; `on_change` is called when that changes.
pub fn prefers_dark(on_change: impl Fn(bool) + 'static) -> bool {
    let Some(query) =
        window().and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
    else {
        return false;
    };
    let listener = Closure::<dyn Fn(web_sys::MediaQueryListEvent)>::new(
        move |event: web_sys::MediaQueryListEvent| on_change(event.matches()),
    );
    let _ = query.add_event_listener_with_callback("change", listener.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    listener.forget();
    query.matches()
}

/// Whether an event target is somewhere a person types: a text field, a select, anything
/// editable, the Monaco editor.
pub fn is_text_field(target: &web_sys::EventTarget) -> bool {
    let Some(element) = target.dyn_ref::<web_sys::Element>() else { return false };
    matches!(element.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
        || element.dyn_ref::<web_sys::HtmlElement>().is_some_and(|e| e.is_content_editable())
        || element.closest(".monaco-editor").ok().flatten().is_some()
}

/// Whether `value` matches all of `pattern` with the browser's `RegExp` in Unicode mode (the `u`
/// flag: closest to regex-lite's syntax, which the server checks with; `[^-x]` is valid there and
/// in `u` mode, not in `<input pattern>`'s `v` mode); a pattern the browser refuses matches
/// nothing. The app's matcher for option patterns (`shared::meta::PatternMatch`), in place of
/// regex-lite.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    compile_pattern(pattern, "u").is_some_and(|re| re.test(value))
}

/// `new RegExp("^(?:pattern)$", flags)`, or `None` where the browser refuses the pattern (the
/// constructor throws, which a plain binding would turn into a trap).
fn compile_pattern(pattern: &str, flags: &str) -> Option<js_sys::RegExp> {
    let constructor = js_sys::Reflect::get(&js_sys::global(), &"RegExp".into()).ok()?;
    let args = js_sys::Array::of2(&format!("^(?:{pattern})$").into(), &flags.into());
    let re = js_sys::Reflect::construct(constructor.dyn_ref::<js_sys::Function>()?, &args).ok()?;
    re.dyn_into::<js_sys::RegExp>().ok()
}

/// Whether the browser accepts `pattern` as an `<input pattern>` (compiled as
/// `^(?:pattern)$` with the `v` flag).
pub fn valid_html_pattern(pattern: &str) -> bool {
    compile_pattern(pattern, "v").is_some()
}

/// Saves bytes as a file named `name` (a `blob:` URL clicked through a hidden link). Returns the
/// URL, to revoke with [`revoke_url`] once the page no longer needs it.
pub fn download(data: &[u8], name: &str, media_type: &str) -> Option<String> {
    use wasm_bindgen::JsCast;
    let url = blob_url(data, media_type)?;
    let link = window()?.document()?.create_element("a").ok()?;
    link.set_attribute("href", &url).ok()?;
    link.set_attribute("download", name).ok()?;
    link.dyn_into::<web_sys::HtmlElement>().ok()?.click();
    Some(url)
}
