//! The static site around the app, generated from the catalog when the server starts: the tool
//! index (`/tools`), one page per container (`/tools/{id}`), and the docs (`/docs/...`, rendered
//! from the repository's Markdown). Templates and styles live in `public/` and are built into the
//! binary. A maintainer adds a container by adding its metadata file; its page follows.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use shared::meta::{ContainerMeta, OptionKind};

use super::SharedState;
use crate::catalog::Catalog;

static PUBLIC: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../public");

/// The documentation pages: URL name, title, Markdown.
const DOCS: [(&str, &str, &str); 5] = [
    ("api", "HTTP API", include_str!("../../../docs/API.md")),
    (
        "metadata",
        "Container metadata: publish a playground for your tool",
        include_str!("../../../container-meta/README.md"),
    ),
    ("self-hosting", "Self-hosting", include_str!("../../../README.md")),
    ("security", "Security model and limits", include_str!("../../../docs/SECURITY.md")),
    ("performance", "Performance", include_str!("../../../docs/PERFORMANCE.md")),
];

/// Every generated page, by path.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pages: BTreeMap<String, String>,
}

impl Site {
    /// Renders every page. `public_url` is where the server is reached from outside (for the
    /// copy-paste `<iframe>` snippets).
    pub fn generate(catalog: &Catalog, images: &images::ImageStore, public_url: &str) -> Site {
        let mut pages = BTreeMap::new();
        pages.insert("/tools".to_owned(), tools_index(catalog));
        for entry in catalog.iter() {
            let image = images.resolve(&entry.meta.id).ok();
            let body = tool_page(
                &entry.meta,
                entry.long_description.as_deref(),
                image.as_ref(),
                public_url,
            );
            pages.insert(
                format!("/tools/{}", entry.meta.id),
                page(&entry.meta.name, &entry.meta.description, &body),
            );
        }
        let mut index = String::from("<h1>Documentation</h1><ul>");
        for (name, title, markdown) in DOCS {
            index.push_str(&format!("<li><a href=\"/docs/{name}\">{}</a></li>", escape(title)));
            let body = format!("<article>{}</article>", markdown_to_html(markdown));
            pages.insert(format!("/docs/{name}"), page(title, title, &body));
        }
        index.push_str(
            "<li><a href=\"/api/v1/openapi.json\">OpenAPI document</a></li>\
             <li><a href=\"/tools\">The tools</a></li></ul>",
        );
        pages.insert(
            "/docs".to_owned(),
            page("Documentation", "Program Explorer documentation", &index),
        );
        Site { pages }
    }

    pub fn get(&self, path: &str) -> Option<&str> {
        self.pages.get(path).map(String::as_str)
    }

    /// Paths of every page (for the link checker).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.pages.keys().map(String::as_str)
    }
}

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/tools", get(tools))
        .route("/tools/{id}", get(tool))
        .route("/docs", get(docs_index))
        .route("/docs/{name}", get(doc))
        .route("/site/{file}", get(asset))
}

fn html(state: &SharedState, path: &str) -> Response {
    match state.site.get(path) {
        Some(body) => {
            ([(header::CACHE_CONTROL, "no-cache")], Html(body.to_owned())).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Html(page(
                "Not found",
                "",
                "<h1>Not found</h1><p><a href=\"/tools\">All tools</a></p>",
            )),
        )
            .into_response(),
    }
}

async fn tools(State(state): State<SharedState>) -> Response {
    html(&state, "/tools")
}

async fn tool(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    html(&state, &format!("/tools/{id}"))
}

async fn docs_index(State(state): State<SharedState>) -> Response {
    html(&state, "/docs")
}

async fn doc(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    html(&state, &format!("/docs/{name}"))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = PUBLIC.get_file(&file).filter(|_| !file.contains('/')) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let kind = match file.rsplit_once('.').map(|(_, e)| e) {
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")],
        found.contents(),
    )
        .into_response()
}

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn page(title: &str, description: &str, body: &str) -> String {
    let template =
        PUBLIC.get_file("page.html").and_then(|f| f.contents_utf8()).unwrap_or("{{body}}");
    template
        .replace("{{title}}", &escape(title))
        .replace("{{description}}", &escape(description))
        .replace("{{body}}", body)
}

fn markdown_to_html(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES);
    // Raw HTML in the Markdown is shown as text, not interpreted.
    let parser = parser.map(|event| match event {
        pulldown_cmark::Event::Html(text) | pulldown_cmark::Event::InlineHtml(text) => {
            pulldown_cmark::Event::Text(text)
        }
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

fn tools_index(catalog: &Catalog) -> String {
    let mut by_category: BTreeMap<&str, Vec<&ContainerMeta>> = BTreeMap::new();
    for entry in catalog.iter() {
        let category = entry.meta.categories.first().map_or("other", String::as_str);
        by_category.entry(category).or_default().push(&entry.meta);
    }
    let mut body = String::from(
        "<h1>Program Explorer</h1>\
         <p class=\"lead\">Compiler Explorer, but for any container. Edit files in the browser, pick a \
         tool, set its options and run it: every run happens in a fresh microVM with no network, \
         and comes back with its output, exit status, timings and output files.</p>\
         <p><a class=\"button\" href=\"/\">Open the playground</a> \
         <a href=\"/docs\">Documentation</a> · <a href=\"/docs/api\">HTTP API</a> · \
         <a href=\"/docs/metadata\">Publish a playground for your tool</a></p>\
         <label for=\"tool-search\">Search the tools</label><br>\
         <input id=\"tool-search\" class=\"search\" type=\"search\" placeholder=\"gcc, json, image...\" \
         autocomplete=\"off\">",
    );
    for (category, metas) in by_category {
        body.push_str(&format!(
            "<section data-category=\"{0}\"><h2>{1}</h2><div class=\"grid\">",
            escape(category),
            escape(&title_case(category))
        ));
        for meta in metas {
            let search = format!(
                "{} {} {} {}",
                meta.id,
                meta.name,
                meta.description,
                meta.categories.join(" ")
            )
            .to_lowercase();
            body.push_str(&format!(
                "<article class=\"card\" data-tool=\"{id}\" data-search=\"{search}\">\
                 <h3><a href=\"/tools/{id}\">{name}</a></h3><p>{desc}</p><div class=\"tags\">{tags}</div></article>",
                id = escape(&meta.id),
                search = escape(&search),
                name = escape(&meta.name),
                desc = escape(&meta.description),
                tags = meta.categories.iter().map(|c| format!("<span class=\"tag\">{}</span>", escape(c))).collect::<String>(),
            ));
        }
        body.push_str("</div></section>");
    }
    page("Tools", "Every tool you can run in Program Explorer", &body)
}

fn title_case(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().collect::<String>() + chars.as_str())
}

fn tool_page(
    meta: &ContainerMeta,
    long_description: Option<&str>,
    image: Option<&images::ImageInfo>,
    public_url: &str,
) -> String {
    let playground = format!("/?container={}", encode(&meta.id));
    let mut body = format!(
        "<h1>{name}</h1><p class=\"lead\">{desc}</p><p><a class=\"button\" href=\"{playground}\">Open in the playground</a></p>",
        name = escape(&meta.name),
        desc = escape(&meta.description),
    );
    if let Some(markdown) = long_description {
        body.push_str(&format!("<section>{}</section>", markdown_to_html(markdown)));
    }
    body.push_str("<section><h2>About</h2><dl class=\"facts\">");
    body.push_str(&format!("<dt>Version</dt><dd>{}</dd>", escape(&meta.version)));
    if let Some(home) = &meta.homepage {
        body.push_str(&format!(
            "<dt>Homepage</dt><dd><a href=\"{0}\" rel=\"noopener\">{0}</a></dd>",
            escape(home)
        ));
    }
    match image {
        Some(image) => body.push_str(&format!(
            "<dt>Image</dt><dd><code>{}</code>, {} MiB</dd>",
            escape(&image.digest),
            image.size.div_ceil(1024 * 1024)
        )),
        None => body.push_str("<dt>Image</dt><dd>not built on this server</dd>"),
    }
    body.push_str(&format!(
        "<dt>Files</dt><dd>{}</dd><dt>Categories</dt><dd>{}</dd></dl></section>",
        escape(
            &meta.inputs.extensions.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(" ")
        ),
        escape(&meta.categories.join(", "))
    ));
    if !meta.examples.is_empty() {
        body.push_str("<section><h2>Examples</h2><ul>");
        for example in &meta.examples {
            body.push_str(&format!(
                "<li><a href=\"/?container={}&amp;example={}\">{}</a>{}</li>",
                encode(&meta.id),
                encode(&example.name),
                escape(&example.name),
                example
                    .description
                    .as_ref()
                    .map(|d| format!(": {}", escape(d)))
                    .unwrap_or_default()
            ));
        }
        body.push_str("</ul></section>");
    }
    if !meta.options.is_empty() {
        body.push_str("<section><h2>Options</h2><table><thead><tr><th>Option</th><th>Values</th><th>Default</th><th>What it does</th></tr></thead><tbody>");
        for option in &meta.options {
            let (values, default) = match &option.kind {
                OptionKind::Select { choices, default } => (
                    choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(", "),
                    default.clone(),
                ),
                OptionKind::MultiSelect { choices, default } => (
                    format!(
                        "any of {}",
                        choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    default.join(" "),
                ),
                OptionKind::Bool { default, .. } => {
                    ("on or off".into(), if *default { "on" } else { "off" }.into())
                }
                OptionKind::Number { min, max, step, default, .. } => {
                    (format!("{min} to {max}, step {step}"), default.to_string())
                }
                OptionKind::Text { default, pattern, .. } => (
                    pattern.as_ref().map_or("text".into(), |p| format!("text matching {p}")),
                    default.clone(),
                ),
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&option.label),
                escape(&values),
                escape(&default),
                escape(option.help.as_deref().unwrap_or(""))
            ));
        }
        body.push_str("</tbody></table></section>");
    }
    let embed = format!("/embed/{}", encode(&meta.id));
    let snippet = format!(
        "<iframe src=\"{}{embed}\" width=\"100%\" height=\"540\" style=\"border:0\" title=\"{} playground\"></iframe>",
        public_url.trim_end_matches('/'),
        meta.name
    );
    body.push_str(&format!(
        "<section><h2>Try it here</h2><iframe class=\"playground\" src=\"{embed}\" title=\"{name} playground\" loading=\"lazy\"></iframe>\
         <h3>Embed it in your own page</h3><p>Copy this into any HTML page:</p><pre><code>{snippet}</code></pre></section>",
        name = escape(&meta.name),
        snippet = escape(&snippet),
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(encode("Hello, C++17"), "Hello%2C%20C%2B%2B17");
    }

    #[test]
    fn raw_html_in_markdown_is_not_interpreted() {
        let html = markdown_to_html("# Title\n\n<script>alert(1)</script>\n");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(!html.contains("<script>"), "{html}");
    }
}
