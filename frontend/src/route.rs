//! The app's addresses, read once when it starts: the playground (`/`, a tool named by
//! `?container=ID&example=NAME`), a permalink (`/l/{id}`) and the embeddable views
//! (`/embed/{id}`, `/embed/l/{id}`). Later changes of the address bar go through
//! `browser::replace_path`, without loading anything.
//!
//! Matched here rather than with leptos_router: the router grew the app's wasm from 350,483 to
//! 395,903 bytes gzip (+45 KB, +13%; frontend/build.sh, 2026-11-30) for four fixed routes read
//! once. The query is parsed by the browser (`URLSearchParams`).

use crate::browser;

/// Where the app was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/` (and any other path the server hands the app).
    Playground,
    /// `/l/{id}`: a stored playground.
    Link(String),
    /// `/embed/{id}`: the compact view of a tool.
    Embed(String),
    /// `/embed/l/{id}`: the compact view of a stored playground.
    EmbedLink(String),
}

impl Route {
    /// The route of a path as the browser gives it (percent-encoded); `decode` decodes one
    /// segment.
    pub fn parse(path: &str, decode: fn(&str) -> Option<String>) -> Route {
        let id = |segment: &str| decode(segment).filter(|id| !id.is_empty() && !id.contains('/'));
        let route = match path.strip_prefix("/embed/") {
            Some(rest) => match rest.strip_prefix("l/") {
                Some(link) => id(link).map(Route::EmbedLink),
                None => id(rest).map(Route::Embed),
            },
            None => path.strip_prefix("/l/").and_then(id).map(Route::Link),
        };
        route.unwrap_or(Route::Playground)
    }

    /// The route of the current page.
    pub fn current() -> Route {
        Route::parse(&browser::path(), browser::decode_uri_component)
    }

    /// The compact view for an `<iframe>`.
    pub fn is_embed(&self) -> bool {
        matches!(self, Route::Embed(_) | Route::EmbedLink(_))
    }

    /// The permalink id, for `/l/{id}` and `/embed/l/{id}`.
    pub fn link(&self) -> Option<&str> {
        match self {
            Route::Link(id) | Route::EmbedLink(id) => Some(id),
            _ => None,
        }
    }

    /// The tool the address names: `/embed/{id}`, else `?container=ID`.
    pub fn container(&self) -> Option<String> {
        match self {
            Route::Embed(id) => Some(id.clone()),
            _ => browser::query_param("container"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Route {
        // Percent-decoding as the browser's decodeURIComponent does for these cases.
        Route::parse(path, |s| Some(s.replace("%2B", "+").replace("%2F", "/")))
    }

    #[test]
    fn each_address_has_its_route() {
        assert_eq!(parse("/"), Route::Playground);
        assert_eq!(parse("/l/abc"), Route::Link("abc".into()));
        assert_eq!(parse("/embed/gcc"), Route::Embed("gcc".into()));
        assert_eq!(parse("/embed/g%2B%2B"), Route::Embed("g++".into()));
        assert_eq!(parse("/embed/l/abc"), Route::EmbedLink("abc".into()));
        assert!(parse("/embed/l/abc").is_embed() && !parse("/l/abc").is_embed());
        assert_eq!(parse("/embed/l/abc").link(), Some("abc"));
    }

    #[test]
    fn anything_else_is_the_playground() {
        for path in ["", "/l/", "/l", "/embed/", "/embed/l/", "/l/a/b", "/embed/a/b", "/other"] {
            assert_eq!(parse(path), Route::Playground, "{path}");
        }
        assert_eq!(Route::parse("/l/%FF", |_| None), Route::Playground, "not decodable");
    }
}
