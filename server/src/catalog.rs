//! The container catalog: every `container-meta/<id>.toml`, with its shared option groups
//! (`container-meta/groups/<name>.toml`) merged and its optional Markdown description
//! (`container-meta/<id>.md`), parsed and validated. Embedded in the binary at build time, so
//! `pe` runs anywhere; `--meta-dir` reads a directory instead (for maintainers editing one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use images::build::Recipe;
use include_dir::{Dir, include_dir};
use shared::meta::{ContainerMeta, MetaError, OptionGroup};

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../container-meta");

/// Why the catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: not valid container metadata")]
    Parse {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(transparent)]
    Invalid(#[from] MetaError),
    #[error("{file}: the id is {id:?}; the file must be named {id}.toml")]
    FileName { file: String, id: String },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One catalog entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: ContainerMeta,
    /// The Markdown file beside the metadata, if any.
    pub long_description: Option<String>,
}

/// Every container, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        let mut files = Vec::new();
        collect_embedded(&EMBEDDED, &mut files);
        Catalog::from_files(files)
    }

    /// The catalog in a directory laid out like `container-meta/`.
    pub fn from_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let mut files = Vec::new();
        for sub in [dir.to_owned(), dir.join("groups")] {
            let Ok(read) = std::fs::read_dir(&sub) else { continue };
            for entry in read.filter_map(Result::ok) {
                let path = entry.path();
                if path.is_file() {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|source| CatalogError::Io { path: path.clone(), source })?;
                    let rel =
                        path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                    files.push((rel, text));
                }
            }
        }
        Catalog::from_files(files)
    }

    /// Builds the catalog from `(path relative to the catalog root, contents)` pairs.
    pub fn from_files(files: Vec<(String, String)>) -> Result<Catalog, CatalogError> {
        let parse_err = |file: &str| {
            let file = file.to_owned();
            move |source| CatalogError::Parse { file, source }
        };
        let mut groups = BTreeMap::new();
        for (path, text) in &files {
            if let Some(name) = path.strip_prefix("groups/").and_then(|p| p.strip_suffix(".toml")) {
                let group: OptionGroup = toml::from_str(text).map_err(parse_err(path))?;
                groups.insert(name.to_owned(), group);
            }
        }
        let docs: BTreeMap<&str, &String> = files
            .iter()
            .filter_map(|(p, t)| Some((p.strip_suffix(".md")?, t)))
            .filter(|(p, _)| !p.contains('/'))
            .collect();
        let mut entries = BTreeMap::new();
        for (path, text) in &files {
            let Some(stem) = path.strip_suffix(".toml").filter(|s| !s.contains('/')) else {
                continue;
            };
            let meta: ContainerMeta = toml::from_str(text).map_err(parse_err(path))?;
            if meta.id != stem {
                return Err(CatalogError::FileName { file: path.clone(), id: meta.id });
            }
            let meta = meta.with_groups(&groups)?;
            meta.validate()?;
            let long_description = docs.get(stem).map(|s| (*s).clone());
            entries.insert(meta.id.clone(), Entry { meta, long_description });
        }
        Ok(Catalog { entries })
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn collect_embedded(dir: &Dir<'_>, out: &mut Vec<(String, String)>) {
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.push((file.path().to_string_lossy().into_owned(), text.to_owned()));
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

/// The build recipe of a container.
pub fn recipe(meta: &ContainerMeta) -> Recipe {
    if let Some(name) = &meta.image.builtin {
        Recipe::Builtin { name: name.clone() }
    } else if let Some(path) = &meta.image.oci_archive {
        Recipe::OciArchive { path: path.into() }
    } else {
        Recipe::Debian { packages: meta.image.debian.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in container-meta/ parses and passes the schema's checks: a broken metadata
    /// file fails CI here.
    #[test]
    fn the_embedded_catalog_is_valid() {
        let catalog = Catalog::embedded()
            .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
        let ids: Vec<&str> = catalog.iter().map(|e| e.meta.id.as_str()).collect();
        for id in [
            "busybox",
            "gcc",
            "g++",
            "python",
            "node",
            "lua",
            "shellcheck",
            "clang-format",
            "jq",
            "sqlite",
            "graphviz",
            "imagemagick",
            "pandoc",
            "clang",
            "rust",
            "go",
            "java",
            "ruby",
            "perl",
            "php",
            "bash",
            "typescript",
            "nasm",
            "ocaml",
            "r",
            "gnuplot",
            "sox",
            "poppler",
            "plantuml",
            "protobuf",
            "miller",
            "black",
            "pylint",
            "wabt",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        for entry in catalog.iter() {
            let meta = &entry.meta;
            assert!(!meta.examples.is_empty(), "{}: no example", meta.id);
            assert!(!meta.files.is_empty(), "{}: no default files", meta.id);
            meta.render(&meta.defaults(), &[]).unwrap();
        }
        assert!(catalog.len() >= 30, "{} containers", catalog.len());
        // The shared C-family group reaches the C compilers.
        for id in ["gcc", "g++", "clang"] {
            assert!(catalog.get(id).unwrap().meta.option("optimization").is_some());
        }
    }

    #[test]
    fn a_broken_file_is_refused_with_its_name() {
        let files = vec![("x.toml".to_owned(), "id = \"y\"\nname = 1\n".to_owned())];
        let err = Catalog::from_files(files).unwrap_err();
        assert!(err.to_string().starts_with("x.toml"), "{err}");
        let gcc = EMBEDDED.get_file("gcc.toml").unwrap().contents_utf8().unwrap().to_owned();
        let err = Catalog::from_files(vec![("cc.toml".into(), gcc)]).unwrap_err();
        assert!(err.to_string().contains("must be named gcc.toml"), "{err}");
    }
}
