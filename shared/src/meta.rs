//! Container metadata: what a maintainer writes in `container-meta/<id>.toml` (see
//! `container-meta/README.md`), what the server serves at `/api/v1/containers`, and what the
//! browser renders as the options form.
//! (Over 600 lines with its tests: the schema and its one renderer belong together.)
//!
//! [`ContainerMeta::render`] turns option values into the command line. It is the one function
//! that does so: the browser calls it (as wasm) to preview the exact command, the server calls
//! it to validate a request and build the job, so the two can never disagree.
//!
//! The argv template is a list of strings. An element of the form `{id}` (the whole element)
//! expands to the arguments of option `id` (zero or more elements), `{args}` to the user's extra
//! arguments; every other element is literal. Values are never spliced into a string, so no
//! value can inject shell syntax: a shell script receives options as `"$@"`.

use std::collections::BTreeMap;
#[cfg(feature = "regex")]
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One container: the contents of a `container-meta/<id>.toml`, with its option groups merged.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerMeta {
    /// Lowercase letters, digits, `-`, `_`, `+` and `.`; the file name and the URL (`/tools/{id}`).
    pub id: String,
    pub name: String,
    /// Version of the tool, for people (the image digest pins the exact build).
    pub version: String,
    pub description: String,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Shared option groups (from `container-meta/groups/<name>.toml`) whose options come
    /// before this container's own.
    #[serde(default)]
    pub groups: Vec<String>,
    pub image: ImageRecipe,
    pub run: RunRecipe,
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// The tool's output is a tree (a site, an unpacked archive, many files): the app asks for
    /// squashfs answers and shows a file tree read lazily, from the first run on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_tree: bool,
    /// The files a new playground starts with.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub examples: Vec<Example>,
    /// How the tool reports problems, so they can be shown in the editor (`[diagnostics]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<crate::diagnostics::DiagnosticsSpec>,
    /// Where a compiler's assembly is and how to ask for it (`[assembly]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assembly: Option<crate::asm::AssemblySpec>,
    /// How the container appears to Compiler Explorer's clients (`[compiler_explorer]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler_explorer: Option<CompilerExplorer>,
}

/// The `[compiler_explorer]` table: the container as a compiler of Compiler Explorer's REST API
/// (`/api/compilers`, `/api/compiler/{id}/compile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompilerExplorer {
    /// The language id as Compiler Explorer names it: `c`, `c++`, `python`, `javascript`, `lua`.
    pub language: String,
    /// The language's name (`C++`).
    pub language_name: String,
    /// Monaco's language id for it (`cpp`); the language id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monaco: Option<String>,
    /// The compiler id clients ask for; the container id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler: Option<String>,
    /// The input file the request's source becomes (`main.c`).
    pub source: String,
    /// A compiler's `bool` option that runs the program after compiling it: the API's `execute`
    /// filter. Absent for an interpreter, whose every run is an execution (listed the way
    /// Compiler Explorer lists interpreters: execution only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_option: Option<String>,
}

impl CompilerExplorer {
    pub fn compiler_id<'a>(&'a self, meta: &'a ContainerMeta) -> &'a str {
        self.compiler.as_deref().unwrap_or(&meta.id)
    }
}

/// How the image is built.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecipe {
    /// Debian packages installed with mmdebstrap into a minimal root filesystem.
    #[serde(default)]
    pub debian: Vec<String>,
    /// Or: an OCI image archive (`docker save` or an OCI layout tarball) to import.
    #[serde(default)]
    pub oci_archive: Option<String>,
    /// A built-in recipe (`busybox`: Debian's busybox-static, no download).
    #[serde(default)]
    pub builtin: Option<String>,
}

/// How the program is run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecipe {
    pub argv: Vec<String>,
    #[serde(default = "default_cwd")]
    pub cwd: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Time limit for this tool, seconds (at most the server's maximum).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// A command a warm VM runs once before its job (as an unprivileged user, in the image
    /// read-only, nothing of it left): the tool's start-up paths are then translated in that
    /// VM's QEMU, not during the job (e.g. `["python3", "-c", "pass"]`). It must write nothing.
    #[serde(default)]
    pub warm_up: Vec<String>,
}

fn default_cwd() -> String {
    "/input".into()
}

/// The kinds of option, each with what its form field needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptionKind {
    Select {
        choices: Vec<Choice>,
        default: String,
    },
    MultiSelect {
        choices: Vec<Choice>,
        default: Vec<String>,
    },
    Bool {
        default: bool,
        /// Arguments when on.
        #[serde(default)]
        args: Vec<String>,
        /// Arguments when off.
        #[serde(default)]
        args_false: Vec<String>,
    },
    Number {
        min: f64,
        max: f64,
        #[serde(default = "one")]
        step: f64,
        default: f64,
        /// Arguments, `{}` replaced by the value.
        #[serde(default = "value_arg")]
        args: Vec<String>,
    },
    Text {
        default: String,
        /// The whole value must match this regular expression (empty text is always allowed).
        #[serde(default)]
        pattern: Option<String>,
        /// Arguments, `{}` replaced by the value. Empty text adds no arguments.
        #[serde(default = "value_arg")]
        args: Vec<String>,
    },
}

fn one() -> f64 {
    1.0
}

fn value_arg() -> Vec<String> {
    vec!["{}".into()]
}

/// One choice of a select or multi-select.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Arguments this choice adds; by default the value itself. `[]` for none.
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

impl Choice {
    fn args(&self) -> Vec<String> {
        self.args.clone().unwrap_or_else(|| vec![self.value.clone()])
    }
}

/// An option of the form. (Unknown fields are refused by [`OptionKind`], which receives every
/// field not named here.)
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionSpec {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(flatten)]
    pub kind: OptionKind,
    /// Also (or only) pass the value in this environment variable.
    #[serde(default)]
    pub env: Option<String>,
}

/// A shared option group file (`container-meta/groups/<name>.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionGroup {
    pub options: Vec<OptionSpec>,
}

/// What files the container accepts: used to suggest containers for the open file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Without the dot: `c`, `py`.
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub media_types: Vec<String>,
}

/// How an output file is shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Text,
    Image,
    Svg,
    /// Shown in a sandboxed iframe.
    Html,
    Hex,
    Download,
}

/// Output files the container makes (paths relative to /output; `*` matches within a name).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub path: String,
    pub view: View,
    #[serde(default)]
    pub label: Option<String>,
}

/// A file with text content.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub content: String,
}

/// A named example: files, option values and what it should produce.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Files; empty means the container's default files.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// What `pe image test` checks of an example.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Exit code (default 0).
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stdout_contains: Option<String>,
    #[serde(default)]
    pub stderr_contains: Option<String>,
    /// Output files that must exist (relative to /output).
    #[serde(default)]
    pub files: Vec<String>,
}

/// An option value the metadata does not accept. Every variant names the option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown option {option:?}")]
    Unknown { option: String },
    #[error("option {option:?} expects {expected}")]
    WrongType { option: String, expected: &'static str },
    #[error("option {option:?}: {value:?} is not one of {choices}")]
    NotAChoice { option: String, value: String, choices: String },
    #[error("option {option:?}: {value} is outside {min}..={max}")]
    OutOfRange { option: String, value: f64, min: f64, max: f64 },
    #[error("option {option:?}: {value} is not a multiple of the step {step} from {min}")]
    OffStep { option: String, value: f64, min: f64, step: f64 },
    #[error("option {option:?}: {value:?} does not match the pattern {pattern}")]
    PatternMismatch { option: String, value: String, pattern: String },
}

impl OptionError {
    /// The option the error is about.
    pub fn option(&self) -> &str {
        match self {
            OptionError::Unknown { option }
            | OptionError::WrongType { option, .. }
            | OptionError::NotAChoice { option, .. }
            | OptionError::OutOfRange { option, .. }
            | OptionError::OffStep { option, .. }
            | OptionError::PatternMismatch { option, .. } => option,
        }
    }
}

/// A metadata file that breaks the schema's rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{container}: {problem}")]
pub struct MetaError {
    pub container: String,
    pub problem: String,
}

/// The command line and environment a run gets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// A checked option value.
enum Checked<'a> {
    One(&'a str),
    Many(Vec<&'a Choice>),
    Flag(bool),
    Num(f64),
}

/// Whether a text option's value matches all of its pattern (`^(?:pattern)$`); a pattern that
/// does not compile matches nothing (patterns are checked when the catalog is loaded).
pub type PatternMatch = fn(pattern: &str, value: &str) -> bool;

/// [`PatternMatch`] with regex-lite: the server and the tools (feature `regex`, on by default).
/// The browser app leaves the feature off and passes the browser's own `RegExp`, which keeps
/// regex-lite out of its wasm.
#[cfg(feature = "regex")]
pub fn regex_match(pattern: &str, value: &str) -> bool {
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

impl ContainerMeta {
    /// Merges the named shared groups' options in front of this container's own.
    pub fn with_groups(
        mut self,
        groups: &BTreeMap<String, OptionGroup>,
    ) -> Result<Self, MetaError> {
        let mut options = Vec::new();
        for name in &self.groups {
            let group = groups
                .get(name)
                .ok_or_else(|| self.problem(format!("unknown option group {name:?}")))?;
            options.extend(group.options.iter().cloned());
        }
        options.append(&mut self.options);
        self.options = options;
        Ok(self)
    }

    fn problem(&self, problem: String) -> MetaError {
        MetaError { container: self.id.clone(), problem }
    }

    pub fn option(&self, id: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.id == id)
    }

    /// The default value of every option.
    pub fn defaults(&self) -> BTreeMap<String, Value> {
        self.options.iter().map(|o| (o.id.clone(), o.kind.default_value())).collect()
    }

    /// Checks the file against the schema's rules: ids, defaults, templates, examples.
    #[cfg(feature = "regex")]
    pub fn validate(&self) -> Result<(), MetaError> {
        let id_ok = |id: &str| {
            !id.is_empty()
                && id.len() <= 64
                && !id.starts_with('.')
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_+.".contains(&b))
        };
        if !id_ok(&self.id) {
            return Err(
                self.problem("id must be lowercase letters, digits, '-', '_', '+' or '.'".into())
            );
        }
        let recipes = [
            !self.image.debian.is_empty(),
            self.image.oci_archive.is_some(),
            self.image.builtin.is_some(),
        ];
        if recipes.iter().filter(|r| **r).count() != 1 {
            return Err(
                self.problem("[image] needs exactly one of debian, oci_archive, builtin".into())
            );
        }
        if self.run.argv.is_empty() {
            return Err(self.problem("[run] argv is empty".into()));
        }
        let mut seen = BTreeSet::new();
        for option in &self.options {
            if !id_ok(&option.id) || option.id == "args" {
                return Err(self.problem(format!("option id {:?} is not allowed", option.id)));
            }
            if !seen.insert(option.id.as_str()) {
                return Err(self.problem(format!("option {:?} is defined twice", option.id)));
            }
            option
                .kind
                .check_definition()
                .map_err(|p| self.problem(format!("option {:?}: {p}", option.id)))?;
            self.check_value(option, &option.kind.default_value(), regex_match)
                .map_err(|e| self.problem(format!("default: {e}")))?;
        }
        for element in &self.run.argv {
            if let Some(name) = placeholder(element)
                && name != "args"
                && self.option(name).is_none()
            {
                return Err(
                    self.problem(format!("argv uses {{{name}}} but there is no such option"))
                );
            }
        }
        for file in self.files.iter().chain(self.examples.iter().flat_map(|e| &e.files)) {
            crate::cpio::normalize_path(&file.path, &crate::cpio::Limits::INPUT)
                .map_err(|e| self.problem(format!("file {:?}: {e}", file.path)))?;
        }
        for example in &self.examples {
            self.render(&example.options, &example.args)
                .map_err(|e| self.problem(format!("example {:?}: {e}", example.name)))?;
        }
        if let Some(diagnostics) = &self.diagnostics {
            diagnostics.validate().map_err(|e| self.problem(e.to_string()))?;
        }
        if let Some(ce) = &self.compiler_explorer
            && let Some(id) = &ce.execute_option
            && !matches!(self.option(id).map(|o| &o.kind), Some(OptionKind::Bool { .. }))
        {
            return Err(self.problem(format!("[compiler_explorer] {id:?} is not a bool option")));
        }
        if let Some(asm) = &self.assembly {
            for id in std::iter::once(&asm.option).chain(&asm.intel_option) {
                if !matches!(self.option(id).map(|o| &o.kind), Some(OptionKind::Bool { .. })) {
                    return Err(self.problem(format!("[assembly] {id:?} is not a bool option")));
                }
            }
            if !self.outputs.iter().any(|o| o.path == asm.file) {
                return Err(
                    self.problem(format!("[assembly] file {:?} is not an output", asm.file))
                );
            }
        }
        Ok(())
    }

    fn check_value<'a>(
        &'a self,
        option: &'a OptionSpec,
        value: &'a Value,
        matches: PatternMatch,
    ) -> Result<Checked<'a>, OptionError> {
        let option_id = || option.id.clone();
        let wrong = |expected| OptionError::WrongType { option: option_id(), expected };
        let find = |choices: &'a [Choice], v: &str| {
            choices.iter().find(|c| c.value == v).ok_or_else(|| OptionError::NotAChoice {
                option: option_id(),
                value: v.to_owned(),
                choices: choices.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(", "),
            })
        };
        match &option.kind {
            OptionKind::Select { choices, .. } => {
                let v = value.as_str().ok_or_else(|| wrong("a string"))?;
                Ok(Checked::One(&find(choices, v)?.value))
            }
            OptionKind::MultiSelect { choices, .. } => {
                let values = value.as_array().ok_or_else(|| wrong("a list of strings"))?;
                let mut picked = Vec::new();
                for v in values {
                    let v = v.as_str().ok_or_else(|| wrong("a list of strings"))?;
                    picked.push(find(choices, v)?);
                }
                // In the order of the choices, each once.
                let chosen: Vec<&Choice> =
                    choices.iter().filter(|c| picked.iter().any(|p| p.value == c.value)).collect();
                Ok(Checked::Many(chosen))
            }
            OptionKind::Bool { .. } => {
                value.as_bool().map(Checked::Flag).ok_or_else(|| wrong("true or false"))
            }
            OptionKind::Number { min, max, step, .. } => {
                let v = value.as_f64().ok_or_else(|| wrong("a number"))?;
                if !(v >= *min && v <= *max) {
                    return Err(OptionError::OutOfRange {
                        option: option_id(),
                        value: v,
                        min: *min,
                        max: *max,
                    });
                }
                let steps = (v - min) / step;
                if (steps - steps.round()).abs() > 1e-9 {
                    return Err(OptionError::OffStep {
                        option: option_id(),
                        value: v,
                        min: *min,
                        step: *step,
                    });
                }
                Ok(Checked::Num(v))
            }
            OptionKind::Text { pattern, .. } => {
                let v = value.as_str().ok_or_else(|| wrong("a string"))?;
                // Empty text means "not set": it adds no arguments, whatever the pattern.
                if let Some(pattern) = pattern.as_ref().filter(|p| !v.is_empty() && !matches(p, v))
                {
                    return Err(OptionError::PatternMismatch {
                        option: option_id(),
                        value: v.to_owned(),
                        pattern: pattern.clone(),
                    });
                }
                Ok(Checked::One(v))
            }
        }
    }

    /// Checks `values` (missing options take their defaults) and renders the command line and
    /// environment: the run recipe's argv with each `{option}` expanded and `{args}` replaced
    /// by `extra_args` (appended at the end when the template has no `{args}`).
    #[cfg(feature = "regex")]
    pub fn render(
        &self,
        values: &BTreeMap<String, Value>,
        extra_args: &[String],
    ) -> Result<Rendered, OptionError> {
        self.render_with(values, extra_args, regex_match)
    }

    /// [`ContainerMeta::render`] with another matcher for text options' patterns.
    pub fn render_with(
        &self,
        values: &BTreeMap<String, Value>,
        extra_args: &[String],
        matches: PatternMatch,
    ) -> Result<Rendered, OptionError> {
        for id in values.keys() {
            if self.option(id).is_none() {
                return Err(OptionError::Unknown { option: id.clone() });
            }
        }
        let mut expanded: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut env = self.run.env.clone();
        for option in &self.options {
            let default = option.kind.default_value();
            let value = values.get(&option.id).unwrap_or(&default);
            let checked = self.check_value(option, value, matches)?;
            let (args, env_value) = option.kind.expand(&checked);
            if let Some(var) = &option.env {
                env.insert(var.clone(), env_value);
            }
            expanded.insert(&option.id, args);
        }
        let mut argv = Vec::new();
        let mut used_args = false;
        for element in &self.run.argv {
            match placeholder(element) {
                Some("args") => {
                    argv.extend(extra_args.iter().cloned());
                    used_args = true;
                }
                Some(name) => argv.extend(expanded.get(name).cloned().unwrap_or_default()),
                None => argv.push(element.clone()),
            }
        }
        if !used_args {
            argv.extend(extra_args.iter().cloned());
        }
        Ok(Rendered { argv, env })
    }

    /// Whether this container accepts a file with this name (by extension).
    pub fn accepts(&self, file_name: &str) -> bool {
        let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        ext.is_some_and(|ext| self.inputs.extensions.iter().any(|e| e.eq_ignore_ascii_case(&ext)))
    }

    /// How to show an output file: the first matching `outputs` entry.
    pub fn view_for(&self, path: &str) -> Option<View> {
        self.outputs.iter().find(|o| glob_match(&o.path, path)).map(|o| o.view)
    }
}

impl OptionKind {
    pub fn default_value(&self) -> Value {
        match self {
            OptionKind::Select { default, .. } | OptionKind::Text { default, .. } => {
                Value::from(default.as_str())
            }
            OptionKind::MultiSelect { default, .. } => Value::from(default.clone()),
            OptionKind::Bool { default, .. } => Value::from(*default),
            OptionKind::Number { default, .. } => {
                serde_json::Number::from_f64(*default).map_or(Value::Null, Value::Number)
            }
        }
    }

    #[cfg(feature = "regex")]
    fn check_definition(&self) -> Result<(), String> {
        match self {
            OptionKind::Select { choices, .. } | OptionKind::MultiSelect { choices, .. } => {
                if choices.is_empty() {
                    return Err("has no choices".into());
                }
                let mut seen = BTreeSet::new();
                if let Some(c) = choices.iter().find(|c| !seen.insert(&c.value)) {
                    return Err(format!("choice {:?} appears twice", c.value));
                }
            }
            OptionKind::Number { min, max, step, .. } => {
                if !(min <= max && *step > 0.0) {
                    return Err("needs min <= max and step > 0".into());
                }
            }
            OptionKind::Text { pattern: Some(p), .. } => {
                regex_lite::Regex::new(p).map_err(|e| format!("pattern does not compile: {e}"))?;
            }
            OptionKind::Text { .. } | OptionKind::Bool { .. } => {}
        }
        Ok(())
    }

    /// Arguments and environment value for a checked value.
    fn expand(&self, checked: &Checked<'_>) -> (Vec<String>, String) {
        let fill =
            |args: &[String], v: &str| args.iter().map(|a| a.replace("{}", v)).collect::<Vec<_>>();
        match (self, checked) {
            (OptionKind::Select { choices, .. }, Checked::One(v)) => {
                let args =
                    choices.iter().find(|c| c.value == *v).map(Choice::args).unwrap_or_default();
                (args, (*v).to_owned())
            }
            (OptionKind::MultiSelect { .. }, Checked::Many(chosen)) => (
                chosen.iter().flat_map(|c| c.args()).collect(),
                chosen.iter().map(|c| c.value.as_str()).collect::<Vec<_>>().join(" "),
            ),
            (OptionKind::Bool { args, args_false, .. }, Checked::Flag(on)) => (
                if *on { args.clone() } else { args_false.clone() },
                if *on { "1" } else { "0" }.into(),
            ),
            (OptionKind::Number { args, .. }, Checked::Num(n)) => {
                let v = format_number(*n);
                (fill(args, &v), v)
            }
            (OptionKind::Text { args, .. }, Checked::One(v)) => {
                (if v.is_empty() { Vec::new() } else { fill(args, v) }, (*v).to_owned())
            }
            _ => (Vec::new(), String::new()),
        }
    }
}

/// `3` rather than `3.0` for whole numbers.
fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
}

/// `Some(name)` when the element is exactly `{name}`.
fn placeholder(element: &str) -> Option<&str> {
    element
        .strip_prefix('{')?
        .strip_suffix('}')
        .filter(|n| !n.is_empty() && !n.contains(['{', '}']))
}

/// `*` matches any run of characters other than `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            let Some(rest) = path.strip_prefix(head) else { return false };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i) && !rest[..i].contains('/'))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gcc() -> ContainerMeta {
        serde_json::from_value(json!({
            "id": "gcc", "name": "GCC", "version": "12", "description": "C compiler",
            "image": {"debian": ["gcc"]},
            "run": {"argv": ["sh", "-c", "gcc \"$@\" main.c && ./a.out", "sh", "{opt}", "{std}",
                             "{warn}", "{asm}", "{width}", "{define}", "{args}"]},
            "options": [
                {"id": "opt", "label": "Optimisation", "type": "select", "default": "-O0",
                 "choices": [{"value": "-O0"}, {"value": "-O2"}, {"value": "none", "args": []}]},
                {"id": "std", "label": "Standard", "type": "select", "default": "c17",
                 "choices": [{"value": "c17", "args": ["-std=c17"]}, {"value": "c99", "args": ["-std=c99"]}]},
                {"id": "warn", "label": "Warnings", "type": "multi_select", "default": ["-Wall"],
                 "choices": [{"value": "-Wall"}, {"value": "-Wextra"}]},
                {"id": "asm", "label": "Assembly", "type": "bool", "default": false,
                 "args": ["-save-temps"], "env": "PE_ASM"},
                {"id": "width", "label": "Width", "type": "number", "min": 1, "max": 100, "step": 1,
                 "default": 80, "args": ["-fmessage-length={}"]},
                {"id": "define", "label": "Define", "type": "text", "default": "",
                 "pattern": "[A-Z_]+(=[0-9]+)?", "args": ["-D{}"]}
            ],
            "examples": [{"name": "fast", "options": {"opt": "-O2"}}]
        }))
        .unwrap()
    }

    #[test]
    fn renders_defaults_and_values_in_template_order() {
        let meta = gcc();
        meta.validate().unwrap();
        let r = meta.render(&BTreeMap::new(), &[]).unwrap();
        assert_eq!(
            r.argv,
            [
                "sh",
                "-c",
                "gcc \"$@\" main.c && ./a.out",
                "sh",
                "-O0",
                "-std=c17",
                "-Wall",
                "-fmessage-length=80"
            ]
        );
        assert_eq!(r.env["PE_ASM"], "0");
        let values = BTreeMap::from([
            ("opt".into(), json!("none")),
            ("warn".into(), json!(["-Wextra", "-Wall"])),
            ("asm".into(), json!(true)),
            ("width".into(), json!(12)),
            ("define".into(), json!("DEBUG=1")),
        ]);
        let r = meta.render(&values, &["-lm".into()]).unwrap();
        assert_eq!(
            r.argv[4..],
            [
                "-std=c17",
                "-Wall",
                "-Wextra",
                "-save-temps",
                "-fmessage-length=12",
                "-DDEBUG=1",
                "-lm"
            ]
        );
        assert_eq!(r.env["PE_ASM"], "1");
    }

    #[test]
    fn bad_values_are_refused_naming_the_option() {
        let meta = gcc();
        let cases = [
            ("nope", json!(1), "unknown option \"nope\""),
            ("opt", json!("-O9"), "option \"opt\": \"-O9\" is not one of -O0, -O2, none"),
            ("opt", json!(2), "option \"opt\" expects a string"),
            ("width", json!(101), "option \"width\": 101 is outside 1..=100"),
            ("width", json!(2.5), "not a multiple of the step"),
            ("define", json!("x; rm -rf /"), "option \"define\": \"x; rm -rf /\" does not match"),
            ("warn", json!(["-Wall", "-Wnope"]), "option \"warn\": \"-Wnope\" is not one of"),
            ("asm", json!("yes"), "option \"asm\" expects true or false"),
        ];
        for (id, value, expected) in cases {
            let err = meta.render(&BTreeMap::from([(id.to_owned(), value)]), &[]).unwrap_err();
            assert_eq!(err.option(), id);
            assert!(err.to_string().contains(expected), "{id}: {err}");
        }
    }

    #[test]
    fn broken_metadata_is_caught() {
        let mut meta = gcc();
        meta.run.argv.push("{missing}".into());
        assert!(meta.validate().unwrap_err().problem.contains("{missing}"));
        let mut meta = gcc();
        meta.examples[0].options.insert("opt".into(), json!("-O7"));
        assert!(meta.validate().unwrap_err().problem.contains("example \"fast\""));
        let mut meta = gcc();
        meta.options[0].kind = OptionKind::Select { choices: vec![], default: "x".into() };
        assert!(meta.validate().is_err());
        let mut meta = gcc();
        meta.files.push(FileSpec { path: "../x".into(), content: String::new() });
        assert!(meta.validate().unwrap_err().problem.contains(".."));
    }

    #[test]
    fn globs_and_extensions() {
        assert!(glob_match("*.svg", "graph.svg"));
        assert!(!glob_match("*.svg", "sub/graph.svg"));
        assert!(glob_match("out/*.png", "out/a.png"));
        assert!(glob_match("main.s", "main.s"));
        let mut meta = gcc();
        meta.inputs.extensions = vec!["c".into(), "h".into()];
        assert!(meta.accepts("Main.C") && !meta.accepts("main.py") && !meta.accepts("Makefile"));
    }
}
