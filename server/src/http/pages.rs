//! The static site around the app, generated from the catalog when the server starts: the tool
//! index (`/tools`), one page per container (`/tools/{id}`), and the docs (`/docs/...`, rendered
//! from the repository's Markdown). The pages are askama templates (`server/templates/`, compiled
//! into the binary, every value HTML-escaped unless marked `|safe`); styles and the site's script
//! live in `public/`. A maintainer adds a container by adding its metadata file; its page follows.

use std::collections::BTreeMap;

use askama::Template;
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
            let page = tool_page(
                &entry.meta,
                entry.long_description.as_deref(),
                image.as_ref(),
                public_url,
            );
            pages.insert(format!("/tools/{}", entry.meta.id), page);
        }
        for (name, title, markdown) in DOCS {
            let page = DocPage { title, description: title, html: markdown_to_html(markdown) };
            pages.insert(format!("/docs/{name}"), render(&page));
        }
        let index = DocsIndex {
            title: "Documentation",
            description: "Program Explorer documentation",
            docs: DOCS.iter().map(|&(name, title, _)| DocLink { name, title }).collect(),
        };
        pages.insert("/docs".to_owned(), render(&index));
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
        None => {
            (StatusCode::NOT_FOUND, Html(render(&NotFound { title: "Not found", description: "" })))
                .into_response()
        }
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

/// Renders a page. The templates are compiled in and escape every value they are given, unless
/// marked `|safe` (only the HTML that `markdown_to_html` made); rendering writes into a `String`
/// and cannot fail.
fn render(template: &impl Template) -> String {
    template.render().expect("rendering a page into a String cannot fail")
}

/// `/tools`: every tool, grouped by its first category.
#[derive(Template)]
#[template(path = "tools.html")]
struct ToolsPage<'a> {
    title: &'a str,
    description: &'a str,
    categories: Vec<CategoryView<'a>>,
}

struct CategoryView<'a> {
    id: &'a str,
    title: String,
    tools: Vec<CardView<'a>>,
}

struct CardView<'a> {
    meta: &'a ContainerMeta,
    /// What the search box matches (lower case).
    search: String,
}

fn tools_index(catalog: &Catalog) -> String {
    let mut by_category: BTreeMap<&str, Vec<CardView<'_>>> = BTreeMap::new();
    for entry in catalog.iter() {
        let meta = &entry.meta;
        let category = meta.categories.first().map_or("other", String::as_str);
        let search =
            format!("{} {} {} {}", meta.id, meta.name, meta.description, meta.categories.join(" "))
                .to_lowercase();
        by_category.entry(category).or_default().push(CardView { meta, search });
    }
    render(&ToolsPage {
        title: "Tools",
        description: "Every tool you can run in Program Explorer",
        categories: by_category
            .into_iter()
            .map(|(id, tools)| CategoryView { id, title: title_case(id), tools })
            .collect(),
    })
}

fn title_case(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().collect::<String>() + chars.as_str())
}

/// `/tools/{id}`: what the tool is, its examples and options, and the playground embedded.
#[derive(Template)]
#[template(path = "tool.html")]
struct ToolPage<'a> {
    title: &'a str,
    description: &'a str,
    meta: &'a ContainerMeta,
    /// The Markdown beside the metadata, as HTML.
    long_description: Option<String>,
    /// Linked only if it is a web address (not, say, `javascript:`).
    homepage: Option<&'a str>,
    image: Option<&'a images::ImageInfo>,
    /// The input file extensions, `.c .h`.
    extensions: String,
    options: Vec<OptionRow>,
    /// The `<iframe>` to copy, shown as text.
    snippet: String,
}

/// One row of the options table.
struct OptionRow {
    label: String,
    values: String,
    default: String,
    help: String,
}

/// The `<iframe>` a maintainer copies into their own page.
#[derive(Template)]
#[template(path = "snippet.html")]
struct Snippet<'a> {
    public_url: &'a str,
    id: &'a str,
    name: &'a str,
}

fn tool_page(
    meta: &ContainerMeta,
    long_description: Option<&str>,
    image: Option<&images::ImageInfo>,
    public_url: &str,
) -> String {
    let snippet = render(&Snippet {
        public_url: public_url.trim_end_matches('/'),
        id: &meta.id,
        name: &meta.name,
    });
    render(&ToolPage {
        title: &meta.name,
        description: &meta.description,
        meta,
        long_description: long_description.map(markdown_to_html),
        homepage: meta
            .homepage
            .as_deref()
            .filter(|url| url.starts_with("https://") || url.starts_with("http://")),
        image,
        extensions: meta
            .inputs
            .extensions
            .iter()
            .map(|e| format!(".{e}"))
            .collect::<Vec<_>>()
            .join(" "),
        options: meta.options.iter().map(option_row).collect(),
        snippet,
    })
}

fn option_row(option: &shared::meta::OptionSpec) -> OptionRow {
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
    OptionRow {
        label: option.label.clone(),
        values,
        default,
        help: option.help.clone().unwrap_or_default(),
    }
}

/// `/docs`: the list of documentation pages.
#[derive(Template)]
#[template(path = "docs.html")]
struct DocsIndex<'a> {
    title: &'a str,
    description: &'a str,
    docs: Vec<DocLink<'a>>,
}

struct DocLink<'a> {
    name: &'a str,
    title: &'a str,
}

/// `/docs/{name}`: one Markdown document.
#[derive(Template)]
#[template(path = "doc.html")]
struct DocPage<'a> {
    title: &'a str,
    description: &'a str,
    /// Made by `markdown_to_html`, which shows raw HTML as text.
    html: String,
}

/// Any path under `/tools` or `/docs` that is not a page.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound<'a> {
    title: &'a str,
    description: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container whose every text field tries to break out of the HTML it lands in.
    const HOSTILE: &str = r#"
id = "evil"
name = "Evil <script>alert('name')</script>"
version = "1.0\"><img src=x onerror=alert(1)>"
description = "<script>alert(\"description\")</script> & more"
homepage = "javascript:alert(1)"
categories = ["<b>bold</b>"]

[image]
builtin = "busybox"

[run]
argv = ["sh", "main.sh", "{level}"]

[[options]]
id = "level"
label = "<i>Level</i>"
help = "</td></tr></table><script>alert('help')</script>"
type = "text"
default = "<u>"

[inputs]
extensions = ["<x>"]

[[files]]
path = "main.sh"
content = "echo hi"

[[examples]]
name = "<svg onload=alert(1)>"
description = "\"quoted\" <em>"
"#;

    #[test]
    fn hostile_metadata_comes_out_escaped_on_every_page() {
        let catalog =
            Catalog::from_files(vec![("evil.toml".into(), HOSTILE.into())]).expect("valid");
        let images = images::ImageStore::new("/nonexistent");
        let site = Site::generate(&catalog, &images, "http://pe.example/\"><script>");
        for path in ["/tools", "/tools/evil"] {
            let html = site.get(path).expect(path);
            // The only tags are the templates' own: one script, the site's.
            assert_eq!(html.matches("<script").count(), 1, "{path}: {html}");
            for injected in ["<img", "<b>", "<i>", "<u>", "<svg", "<em>", "<x>", "1.0\">"] {
                assert!(!html.contains(injected), "{path} lets {injected} through: {html}");
            }
            assert!(html.contains("&#60;script&#62;"), "{path} shows the text: {html}");
        }
        let tool = site.get("/tools/evil").unwrap();
        assert!(
            tool.contains("<title>Evil &#60;script&#62;alert(&#39;name&#39;)&#60;/script&#62; · ")
        );
        assert!(tool.contains("&#60;/td&#62;&#60;/tr&#62;&#60;/table&#62;"), "{tool}");
        // A `javascript:` homepage is no link.
        assert!(!tool.contains("javascript:"), "{tool}");
        // The example link's query is percent-encoded.
        assert!(
            tool.contains(
                "href=\"/?container=evil&amp;example=%3Csvg%20onload%3Dalert%281%29%3E\""
            )
        );
        // The snippet is HTML shown as text: escaped once to be valid HTML, once more to be shown.
        assert!(
            tool.contains(
                "&#60;iframe src=&#34;http://pe.example/&#38;#34;&#38;#62;&#38;#60;script&#38;#62;/embed/evil&#34;"
            ),
            "{tool}"
        );
    }

    #[test]
    fn raw_html_in_markdown_is_not_interpreted() {
        let html = markdown_to_html("# Title\n\n<script>alert(1)</script>\n");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(!html.contains("<script>"), "{html}");
    }
}
