//! The playground's state as plain data: which container, its option values, extra arguments
//! and environment, the input files and which one is standard input. What a permalink stores
//! ([`PlaygroundState`]), what local storage keeps, and what a run sends are all derived from
//! it here, with no browser APIs, so the rules are tested on the host.
//!
//! Standard input is one of the tabs, marked. A tab named `stdin` is standard input only;
//! any other marked file is an input file too (the program sees it in `/input` and on stdin).
//! A permalink keeps standard input as text: on the way back it marks the file with that
//! content, or opens a `stdin` tab.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::api::v1::{CompareSetup, JsonFile, PlaygroundState, RunRequest};
use shared::cpio::{Entry, Limits};
use shared::meta::{ContainerMeta, Example, FileSpec};

use crate::format::{self, parse_args, parse_env};

/// The name of the tab that is standard input only.
pub const STDIN_TAB: &str = "stdin";

/// One input file (text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub content: String,
}

/// Everything the page lets a person edit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Playground {
    pub container: String,
    pub options: BTreeMap<String, Value>,
    /// Extra arguments, one per line.
    pub args: String,
    /// Extra environment, `KEY=VALUE` per line.
    pub env: String,
    pub files: Vec<InputFile>,
    /// Path of the file fed to standard input.
    pub stdin_file: Option<String>,
    /// Index of the open tab.
    #[serde(default)]
    pub active: usize,
    /// The second setup of the compare view (same files and stdin), when comparing.
    #[serde(default)]
    pub compare: Option<Setup>,
}

/// A container with its option values, extra arguments and environment: one side of a
/// comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub container: String,
    pub options: BTreeMap<String, Value>,
    pub args: String,
    pub env: String,
}

impl Setup {
    /// A container's defaults.
    pub fn defaults(meta: &ContainerMeta) -> Setup {
        Setup { container: meta.id.clone(), options: meta.defaults(), ..Setup::default() }
    }

    fn to_state(&self) -> Result<CompareSetup, String> {
        Ok(CompareSetup {
            container: self.container.clone(),
            options: self.options.clone(),
            args: parse_args(&self.args),
            env: parse_env(&self.env)?,
        })
    }

    fn from_state(state: CompareSetup) -> Setup {
        Setup {
            container: state.container,
            options: state.options,
            args: format::args_text(&state.args),
            env: format::env_text(&state.env),
        }
    }
}

fn input_files(specs: &[FileSpec]) -> Vec<InputFile> {
    specs.iter().map(|f| InputFile { path: f.path.clone(), content: f.content.clone() }).collect()
}

impl Playground {
    /// A fresh playground for a container: its default files, options and standard input.
    pub fn defaults(meta: &ContainerMeta) -> Playground {
        let mut files = input_files(&meta.files);
        if files.is_empty() {
            let ext = meta.inputs.extensions.first().map_or("txt", String::as_str);
            files.push(InputFile { path: format!("input.{ext}"), content: String::new() });
        }
        let mut pg = Playground {
            container: meta.id.clone(),
            options: meta.defaults(),
            files,
            ..Playground::default()
        };
        pg.set_stdin_text(meta.stdin.clone());
        pg
    }

    /// The playground of one of the container's examples.
    pub fn example(meta: &ContainerMeta, example: &Example) -> Playground {
        let mut pg = Playground::defaults(meta);
        if !example.files.is_empty() {
            pg.files = input_files(&example.files);
        }
        pg.options.extend(example.options.iter().map(|(k, v)| (k.clone(), v.clone())));
        pg.args = format::args_text(&example.args);
        pg.stdin_file = None;
        pg.files.retain(|f| f.path != STDIN_TAB);
        pg.set_stdin_text(example.stdin.clone().or_else(|| meta.stdin.clone()));
        pg
    }

    /// The playground after switching to another container. Options, arguments and environment
    /// start from the new container's defaults. The files stay when the new container accepts
    /// one of them and they were edited; untouched default files are replaced; otherwise the
    /// new container's default files are added beside them.
    pub fn switch_to(&self, old: Option<&ContainerMeta>, new: &ContainerMeta) -> Playground {
        let fresh = Playground::defaults(new);
        let untouched = old.is_none_or(|old| {
            let defaults = Playground::defaults(old).files;
            self.files == defaults
                || old.examples.iter().any(|e| Playground::example(old, e).files == self.files)
        });
        if self.files.is_empty() || untouched {
            return Playground { compare: self.compare.clone(), ..fresh };
        }
        let mut pg =
            Playground { files: self.files.clone(), compare: self.compare.clone(), ..fresh };
        pg.stdin_file = self.stdin_file.clone();
        pg.active = self.active.min(pg.files.len().saturating_sub(1));
        if let Some(accepted) = self.files.iter().position(|f| new.accepts(&f.path)) {
            // Open a file the new container takes, unless the open one is.
            if !new.accepts(&pg.files[pg.active].path) {
                pg.active = accepted;
            }
        } else {
            let first_new = pg.files.len();
            for file in fresh.files {
                if !pg.files.iter().any(|f| f.path == file.path) {
                    pg.files.push(file);
                }
            }
            pg.active = first_new.min(pg.files.len() - 1);
        }
        pg
    }

    /// Marks the file holding `text` as standard input, or opens a `stdin` tab for it.
    fn set_stdin_text(&mut self, text: Option<String>) {
        let Some(text) = text else { return };
        if let Some(file) = self.files.iter().find(|f| f.content == text) {
            self.stdin_file = Some(file.path.clone());
            return;
        }
        // A file named `stdin` is standard input: it takes the text.
        match self.files.iter_mut().find(|f| f.path == STDIN_TAB) {
            Some(file) => file.content = text,
            None => self.files.push(InputFile { path: STDIN_TAB.into(), content: text }),
        }
        self.stdin_file = Some(STDIN_TAB.into());
    }

    /// The text fed to standard input.
    pub fn stdin_text(&self) -> Option<&str> {
        let path = self.stdin_file.as_deref()?;
        self.files.iter().find(|f| f.path == path).map(|f| f.content.as_str())
    }

    /// The files that go into the input archive (a `stdin` tab does not).
    pub fn archive_files(&self) -> impl Iterator<Item = &InputFile> {
        let stdin_only = self.stdin_file.as_deref() == Some(STDIN_TAB);
        self.files.iter().filter(move |f| !(stdin_only && f.path == STDIN_TAB))
    }

    /// What a permalink stores.
    pub fn to_state(&self) -> Result<PlaygroundState, String> {
        Ok(PlaygroundState {
            container: self.container.clone(),
            options: self.options.clone(),
            args: parse_args(&self.args),
            env: parse_env(&self.env)?,
            files: self
                .archive_files()
                .map(|f| JsonFile {
                    path: f.path.clone(),
                    content: Some(f.content.clone()),
                    content_base64: None,
                })
                .collect(),
            stdin: self.stdin_text().map(str::to_owned),
            // A `stdin` tab is not one of the files: its text is all there is.
            stdin_file: self.stdin_file.clone().filter(|f| f != STDIN_TAB),
            compare: self.compare.as_ref().map(Setup::to_state).transpose()?,
        })
    }

    /// The playground a permalink opens. Files stored as base64 are shown as text.
    pub fn from_state(state: PlaygroundState) -> Playground {
        let files = state
            .files
            .into_iter()
            .map(|f| InputFile {
                content: f.content.unwrap_or_else(|| {
                    f.content_base64.as_deref().map(decode_base64_lossy).unwrap_or_default()
                }),
                path: f.path,
            })
            .collect();
        let mut pg = Playground {
            container: state.container,
            options: state.options,
            args: format::args_text(&state.args),
            env: format::env_text(&state.env),
            files,
            stdin_file: None,
            active: 0,
            compare: state.compare.map(Setup::from_state),
        };
        match state.stdin_file.filter(|name| pg.files.iter().any(|f| &f.path == name)) {
            Some(name) => pg.stdin_file = Some(name),
            // Links made before `stdin_file` existed: the first file with that content.
            None => pg.set_stdin_text(state.stdin),
        }
        pg
    }

    /// The request header and the input files of a run.
    pub fn run_request(&self) -> Result<(RunRequest, Vec<Entry>), String> {
        let state = self.to_state()?;
        let files =
            self.archive_files().map(|f| Entry::file(&f.path, f.content.as_bytes())).collect();
        let request = RunRequest {
            container: state.container,
            options: state.options,
            args: state.args,
            argv: None,
            env: state.env,
            stdin: state.stdin,
            inputs_digest: None,
        };
        Ok((request, files))
    }

    /// The compare view's second run: its setup, the same files and stdin.
    pub fn compare_request(&self) -> Result<Option<RunRequest>, String> {
        let Some(setup) = &self.compare else { return Ok(None) };
        let setup = setup.to_state()?;
        Ok(Some(RunRequest {
            container: setup.container,
            options: setup.options,
            args: setup.args,
            argv: None,
            env: setup.env,
            stdin: self.stdin_text().map(str::to_owned),
            inputs_digest: None,
        }))
    }

    /// Why `name` cannot be the name of file `index`, if it cannot.
    pub fn name_problem(&self, index: usize, name: &str) -> Option<String> {
        match shared::cpio::normalize_path(name, &Limits::INPUT) {
            Err(e) => Some(e.to_string()),
            Ok(None) => Some("a file needs a name".into()),
            Ok(Some(normal)) if normal != name => Some(format!("write it as {normal:?}")),
            Ok(Some(_)) => self
                .files
                .iter()
                .enumerate()
                .any(|(i, f)| i != index && f.path == name)
                .then(|| format!("there is already a file named {name:?}")),
        }
    }
}

/// Standard base64 to text; invalid input or bytes become U+FFFD.
fn decode_base64_lossy(text: &str) -> String {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let Some(v) = value(c) else { return char::REPLACEMENT_CHARACTER.to_string() };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(id: &str, ext: &str, files: &[(&str, &str)], stdin: Option<&str>) -> ContainerMeta {
        serde_json::from_value(json!({
            "id": id, "name": id, "version": "1", "description": "d",
            "image": {"builtin": "busybox"}, "run": {"argv": ["sh", "{opt}"]},
            "options": [{"id": "opt", "label": "O", "type": "select", "default": "-a",
                         "choices": [{"value": "-a"}, {"value": "-b"}]}],
            "inputs": {"extensions": [ext]},
            "files": files.iter().map(|(p, c)| json!({"path": p, "content": c})).collect::<Vec<_>>(),
            "stdin": stdin,
            "examples": [{"name": "e", "options": {"opt": "-b"}, "stdin": "words",
                          "files": [{"path": "main.sh", "content": "wc"}]}]
        }))
        .unwrap()
    }

    #[test]
    fn permalink_round_trip_is_exact() {
        let sh = meta("busybox", "sh", &[("main.sh", "echo")], None);
        let mut pg = Playground::example(&sh, &sh.examples[0]);
        assert_eq!(pg.stdin_file.as_deref(), Some(STDIN_TAB));
        pg.env = "A=1".into();
        let state = pg.to_state().unwrap();
        assert_eq!(state.files.len(), 1, "the stdin tab is not an input file");
        assert_eq!(state.stdin.as_deref(), Some("words"));
        assert_eq!(state.options["opt"], "-b");
        let back = Playground::from_state(state.clone());
        assert_eq!(back.to_state().unwrap(), state);
        assert_eq!(back.files, pg.files);
    }

    #[test]
    fn a_marked_file_is_an_input_and_stdin() {
        let sh = meta("busybox", "sh", &[("main.sh", "cat"), ("data.txt", "1 2")], None);
        let mut pg = Playground::defaults(&sh);
        pg.stdin_file = Some("data.txt".into());
        let (request, files) = pg.run_request().unwrap();
        assert_eq!(request.stdin.as_deref(), Some("1 2"));
        assert_eq!(files.len(), 2);
        let back = Playground::from_state(pg.to_state().unwrap());
        assert_eq!(back.stdin_file.as_deref(), Some("data.txt"));
    }

    #[test]
    fn the_marked_file_survives_a_link_among_files_with_the_same_content() {
        let sh = meta("busybox", "sh", &[("a.txt", "same"), ("b.txt", "same")], None);
        let mut pg = Playground::defaults(&sh);
        pg.stdin_file = Some("b.txt".into());
        let state = pg.to_state().unwrap();
        assert_eq!(state.stdin_file.as_deref(), Some("b.txt"));
        assert_eq!(state.validate(), Ok(()));
        let back = Playground::from_state(state);
        assert_eq!(back.stdin_file.as_deref(), Some("b.txt"), "not the first file with that text");
        // A link from before `stdin_file`: the first file with that content is marked.
        let mut old = pg.to_state().unwrap();
        old.stdin_file = None;
        assert_eq!(Playground::from_state(old).stdin_file.as_deref(), Some("a.txt"));
    }

    #[test]
    fn switching_keeps_edited_files_the_new_container_accepts() {
        let gcc = meta("gcc", "c", &[("main.c", "int main;")], None);
        let clang = meta("clang", "c", &[("hello.c", "")], None);
        let dot = meta("graphviz", "dot", &[("graph.dot", "digraph{}")], None);
        let pristine = Playground::defaults(&gcc);
        assert_eq!(pristine.switch_to(Some(&gcc), &dot).files[0].path, "graph.dot");
        let mut edited = pristine.clone();
        edited.files[0].content = "int main(void) { return 1; }".into();
        let kept = edited.switch_to(Some(&gcc), &clang);
        assert_eq!(kept.files, edited.files);
        assert_eq!(kept.container, "clang");
        let added = edited.switch_to(Some(&gcc), &dot);
        assert_eq!(added.files.len(), 2);
        assert_eq!(added.files[added.active].path, "graph.dot");
        let back = added.switch_to(Some(&dot), &gcc);
        assert_eq!(back.files.len(), 2);
        assert_eq!(back.files[back.active].path, "main.c");
    }

    #[test]
    fn a_comparison_round_trips_through_a_permalink_and_runs_on_the_same_files() {
        let sh = meta("busybox", "sh", &[("main.sh", "cat")], Some("in"));
        let mut pg = Playground::defaults(&sh);
        let mut other = Setup::defaults(&sh);
        other.options.insert("opt".into(), json!("-b"));
        other.env = "B=2".into();
        pg.compare = Some(other);
        let state = pg.to_state().unwrap();
        let compare = state.compare.clone().unwrap();
        assert_eq!(compare.options["opt"], "-b");
        assert_eq!(compare.env["B"], "2");
        let back = Playground::from_state(state.clone());
        assert_eq!(back.compare, pg.compare);
        assert_eq!(back.to_state().unwrap(), state);

        let (a, _) = pg.run_request().unwrap();
        let b = pg.compare_request().unwrap().unwrap();
        assert_eq!(a.stdin, b.stdin);
        assert_eq!(
            (a.options["opt"].as_str(), b.options["opt"].as_str()),
            (Some("-a"), Some("-b"))
        );
        // Switching container A keeps the comparison.
        let gcc = meta("gcc", "c", &[("main.c", "")], None);
        assert_eq!(pg.switch_to(Some(&sh), &gcc).compare, pg.compare);
        // Without one, a state has no `compare` field at all (older links stay the same).
        pg.compare = None;
        assert!(!serde_json::to_string(&pg.to_state().unwrap()).unwrap().contains("compare"));
    }

    #[test]
    fn names_are_checked() {
        let pg = Playground::defaults(&meta("x", "c", &[("a.c", ""), ("b.c", "")], None));
        assert!(pg.name_problem(0, "b.c").unwrap().contains("already"));
        assert!(pg.name_problem(0, "../a.c").is_some());
        assert!(pg.name_problem(0, "/a.c").is_some());
        assert_eq!(pg.name_problem(0, "src/a.c"), None);
        assert_eq!(decode_base64_lossy("aGk="), "hi");
    }
}
