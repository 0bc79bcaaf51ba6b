//! Compiler Explorer's REST API, translated: its request shapes become our runs and our results
//! become its `CompilationResult`, so that Compiler Explorer's clients (command-line tools,
//! editor plugins, scripts) work against this server unchanged. Plain data and functions here;
//! the routes are in `http/ce.rs`.
//! (Over 600 lines with its tests: Compiler Explorer's requests and answers are one translation.)
//!
//! 1. [`CompileRequest::from_json`] and [`CompileRequest::from_text`]: the JSON body, or the
//!    plain-text body (the source) with `options`, `filters`, `addFilters`, `removeFilters` and
//!    `skipAsm` in the query. `userArguments` are split like a shell would ([`split_arguments`]).
//! 2. [`CompileRequest::runs`]: a compiler (a container with an `execute_option`) becomes a
//!    compile run (its assembly asked for unless `skipAsm`) and, when `execute` is asked for and
//!    the compile succeeded, an execute run; an interpreter becomes one run, the execution.
//! 3. [`compilation_result`]: the answers as `CompilationResult` JSON: `stdout`/`stderr` lines
//!    tagged with the diagnostics, `asm` lines with their source line (`file: null` for the main
//!    source), `execResult`; [`text_result`] is its plain-text layout.
//! 4. [`ClientState`]: Compiler Explorer's saved state (`sessions`, or a layout with `content`),
//!    to and from our playground state, for `/api/shortener`, `/api/shortlinkinfo/{id}`,
//!    `/z/{id}` and `/clientstate/{base64}`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};
use shared::api::v1::{JsonFile, PlaygroundState, RunRequest, RunStatus};
use shared::asm::{self, Filters};
use shared::diagnostics::{Diagnostic, Severity};
use shared::meta::{CompilerExplorer, ContainerMeta};

use crate::convert::RunAnswer;

/// The file that carries a compiled program's own arguments, one per line (gcc.toml reads it).
pub const PROGRAM_ARGS_FILE: &str = ".program-args";

/// Default on, as Compiler Explorer's compilers report them.
const DEFAULT_ON: &[&str] =
    &["labels", "directives", "commentOnly", "demangle", "intel", "libraryCode"];

/// Splits `-O1 -monkey "badger badger"` into `-O1`, `-monkey`, `badger badger`: white space
/// separates, single and double quotes group (a backslash escapes the next character outside
/// single quotes).
pub fn split_arguments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut started = false;
    let mut quote = None::<char>;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => current.push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                started = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            (None, c) => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

/// The filters of a text request: `filters=a,b` replaces the defaults, then `addFilters` adds
/// and `removeFilters` removes (Compiler Explorer's order).
pub fn query_filters(
    filters: Option<&str>,
    add: Option<&str>,
    remove: Option<&str>,
) -> BTreeSet<String> {
    let list = |s: Option<&str>| -> Vec<String> {
        s.unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut set: BTreeSet<String> = match filters {
        Some(f) => list(Some(f)).into_iter().collect(),
        None => DEFAULT_ON.iter().map(|f| (*f).to_owned()).collect(),
    };
    set.extend(list(add));
    for f in list(remove) {
        set.remove(&f);
    }
    set
}

/// A request that is not a compile request Compiler Explorer would take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("Missing source property")]
    MissingSource,
    #[error("Missing options property")]
    MissingOptions,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("a program argument may not contain a line break")]
    ArgumentLineBreak,
}

/// A compile request, whichever form it came in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompileRequest {
    pub source: String,
    pub user_arguments: Vec<String>,
    pub filters: BTreeSet<String>,
    pub skip_asm: bool,
    pub execute_args: Vec<String>,
    pub stdin: Option<String>,
    /// Other files: (name, content).
    pub files: Vec<(String, String)>,
    pub bypass_cache: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonBody {
    source: Option<String>,
    options: Option<JsonOptions>,
    #[serde(default)]
    files: Vec<JsonFileEntry>,
    #[serde(default)]
    bypass_cache: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonOptions {
    #[serde(default)]
    user_arguments: String,
    #[serde(default)]
    compiler_options: Value,
    #[serde(default)]
    filters: BTreeMap<String, Value>,
    #[serde(default)]
    execute_parameters: ExecuteParameters,
}

#[derive(Debug, Default, Deserialize)]
struct ExecuteParameters {
    #[serde(default)]
    args: Value,
    #[serde(default)]
    stdin: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JsonFileEntry {
    filename: String,
    contents: String,
}

impl CompileRequest {
    /// The JSON form (`Content-Type: application/json`).
    pub fn from_json(body: &[u8]) -> Result<CompileRequest, RequestError> {
        let body: JsonBody =
            serde_json::from_slice(body).map_err(|e| RequestError::Invalid(e.to_string()))?;
        let options = body.options.ok_or(RequestError::MissingOptions)?;
        let source = body.source.ok_or(RequestError::MissingSource)?;
        let mut filters: BTreeSet<String> = DEFAULT_ON.iter().map(|f| (*f).to_owned()).collect();
        for (name, value) in &options.filters {
            if value.as_bool().unwrap_or(false) {
                filters.insert(name.clone());
            } else {
                filters.remove(name);
            }
        }
        let execute_args = match &options.execute_parameters.args {
            Value::String(s) => split_arguments(s),
            Value::Array(list) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let skip_asm =
            options.compiler_options.get("skipAsm").and_then(Value::as_bool).unwrap_or(false);
        // `bypassCache` was a bool and is now a number (0: none, 1: compilation, 2: execution).
        let bypass_cache = body.bypass_cache.as_bool().unwrap_or(false)
            || body.bypass_cache.as_u64().is_some_and(|n| n > 0);
        Ok(CompileRequest {
            source,
            user_arguments: split_arguments(&options.user_arguments),
            filters,
            skip_asm,
            execute_args,
            stdin: options.execute_parameters.stdin,
            files: body.files.into_iter().map(|f| (f.filename, f.contents)).collect(),
            bypass_cache,
        })
    }

    /// The plain-text form: the body is the source; the rest is in the query.
    pub fn from_text(source: String, query: &TextQuery) -> CompileRequest {
        CompileRequest {
            source,
            user_arguments: split_arguments(query.options.as_deref().unwrap_or("")),
            filters: query_filters(
                query.filters.as_deref(),
                query.add_filters.as_deref(),
                query.remove_filters.as_deref(),
            ),
            skip_asm: query.skip_asm.as_deref() == Some("true"),
            ..CompileRequest::default()
        }
    }

    fn filter(&self, name: &str) -> bool {
        self.filters.contains(name)
    }

    /// The asm filters asked for.
    pub fn asm_filters(&self) -> Filters {
        Filters {
            directives: self.filter("directives"),
            labels: self.filter("labels"),
            comment_only: self.filter("commentOnly"),
            library_code: self.filter("libraryCode"),
            demangle: self.filter("demangle"),
            trim: self.filter("trim"),
        }
    }

    /// The runs this request is, for `meta` (which has a `[compiler_explorer]` table): the
    /// compile run and, for a compiler, the execute run to make if the compile succeeds.
    pub fn runs(&self, meta: &ContainerMeta, ce: &CompilerExplorer) -> Result<Plan, RequestError> {
        let mut files = vec![JsonFile {
            path: ce.source.clone(),
            content: Some(self.source.clone()),
            content_base64: None,
        }];
        for (name, content) in &self.files {
            files.push(JsonFile {
                path: name.clone(),
                content: Some(content.clone()),
                content_base64: None,
            });
        }
        let base = RunRequest { container: meta.id.clone(), ..RunRequest::default() };
        let Some(execute_option) = &ce.execute_option else {
            // An interpreter: the run is the execution; its arguments are the program's.
            let run =
                RunRequest { args: self.execute_args.clone(), stdin: self.stdin.clone(), ..base };
            let execute = self.filter("execute").then_some(run);
            return Ok(Plan { compile: None, execute, execute_files: files.clone(), files });
        };
        let mut options = BTreeMap::new();
        options.insert(execute_option.clone(), json!(false));
        if let Some(asm) = &meta.assembly {
            options.insert(asm.option.clone(), json!(!self.skip_asm && !self.filter("binary")));
            if let Some(intel) = &asm.intel_option {
                options.insert(intel.clone(), json!(self.filter("intel")));
            }
        }
        let compile = RunRequest {
            options: options.clone(),
            args: self.user_arguments.clone(),
            ..base.clone()
        };
        let execute = self.filter("execute").then(|| {
            options.insert(execute_option.clone(), json!(true));
            if let Some(asm) = &meta.assembly {
                options.insert(asm.option.clone(), json!(false));
            }
            RunRequest {
                options,
                args: self.user_arguments.clone(),
                stdin: self.stdin.clone(),
                ..base
            }
        });
        let mut execute_files = files.clone();
        if !self.execute_args.is_empty() {
            if self.execute_args.iter().any(|a| a.contains(['\n', '\r'])) {
                return Err(RequestError::ArgumentLineBreak);
            }
            let mut text = self.execute_args.join("\n");
            text.push('\n');
            execute_files.push(JsonFile {
                path: PROGRAM_ARGS_FILE.into(),
                content: Some(text),
                content_base64: None,
            });
        }
        Ok(Plan { compile: Some(compile), execute, files, execute_files })
    }
}

/// What [`CompileRequest::runs`] plans: the compile run (none for an interpreter) and the
/// execute run, if asked for, with their files (the execute run's also carry the program's
/// arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub compile: Option<RunRequest>,
    pub execute: Option<RunRequest>,
    pub files: Vec<JsonFile>,
    pub execute_files: Vec<JsonFile>,
}

/// The query of the plain-text form.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextQuery {
    pub options: Option<String>,
    pub filters: Option<String>,
    pub add_filters: Option<String>,
    pub remove_filters: Option<String>,
    pub skip_asm: Option<String>,
}

fn severity_number(severity: Severity) -> u8 {
    match severity {
        Severity::Error => 3,
        Severity::Warning => 2,
        Severity::Note | Severity::Info => 1,
    }
}

/// Output as Compiler Explorer's lines, `[{text, tag?}]`: a line that carries a diagnostic's
/// message gets it as its `tag` (each diagnostic tags the first such line).
fn result_lines(text: &str, diagnostics: &[&Diagnostic]) -> Vec<Value> {
    let mut unused: Vec<&Diagnostic> = diagnostics.to_vec();
    text.lines()
        .map(|line| {
            let found =
                unused.iter().position(|d| !d.message.is_empty() && line.contains(&d.message));
            match found.map(|i| unused.remove(i)) {
                Some(d) => {
                    let mut tag = json!({"line": d.line, "file": d.path, "text": d.message,
                                          "severity": severity_number(d.severity)});
                    if d.column > 0 {
                        tag["column"] = json!(d.column);
                    }
                    if let (Some(l), Some(c)) = (d.end_line, d.end_column) {
                        tag["endline"] = json!(l);
                        tag["endcolumn"] = json!(c);
                    }
                    json!({"text": line, "tag": tag})
                }
                None => json!({"text": line}),
            }
        })
        .collect()
}

fn stream_lines(answer: &RunAnswer, stderr: bool, skip: usize) -> Vec<Value> {
    use shared::diagnostics::Stream;
    let bytes = if stderr { &answer.stderr } else { &answer.stdout };
    let text = String::from_utf8_lossy(bytes.get(skip..).unwrap_or_default());
    let want = if stderr { Stream::Stderr } else { Stream::Stdout };
    let diagnostics: Vec<&Diagnostic> =
        answer.result.diagnostics.iter().filter(|d| d.stream == want).collect();
    result_lines(&text, &diagnostics)
}

fn exit_code(answer: &RunAnswer) -> i64 {
    match answer.result.status {
        RunStatus::Exited => i64::from(answer.result.exit_code.unwrap_or(-1)),
        _ => -1,
    }
}

/// The assembly of a compile run, as `[{text, source, labels}]`.
fn asm_lines(meta: &ContainerMeta, request: &CompileRequest, answer: &RunAnswer) -> Vec<Value> {
    let Some(spec) = &meta.assembly else { return Vec::new() };
    if request.skip_asm {
        return Vec::new();
    }
    let Some(entry) = answer.files.iter().find(|e| e.path == spec.file) else {
        let text =
            if exit_code(answer) == 0 { "<No assembly generated>" } else { "<Compilation failed>" };
        return vec![json!({"text": text, "source": null, "labels": []})];
    };
    let text = String::from_utf8_lossy(entry.content());
    let parsed = asm::parse(&text, &spec.source, &meta.run.cwd, &request.asm_filters());
    parsed
        .lines
        .into_iter()
        .map(|line| {
            let source = line.source.map(|s| {
                let file = (s.file != spec.source).then_some(s.file);
                json!({"file": file, "line": s.line, "mainsource": file.is_none()})
            });
            json!({"text": line.text, "source": source, "labels": []})
        })
        .collect()
}

/// The command line as a list of options: a shell script's text (`sh -c SCRIPT NAME ARGS...`)
/// is left out, its name and arguments kept.
fn compilation_options(argv: &[String]) -> &[String] {
    match argv {
        [sh, c, _script, rest @ ..] if sh.ends_with("sh") && c == "-c" => rest,
        all => all,
    }
}

/// Compiler Explorer's `CompilationResult` for the runs made: the compile run (none for an
/// interpreter) and the execute run (none when not asked for, or the compile failed).
pub fn compilation_result(
    meta: &ContainerMeta,
    request: &CompileRequest,
    compile: Option<&RunAnswer>,
    execute: Option<&RunAnswer>,
) -> Value {
    let timed_out = |a: &RunAnswer| a.result.status == RunStatus::Timeout;
    let ok_to_cache = |a: &RunAnswer| a.result.status.is_cacheable();
    let build = |a: &RunAnswer| {
        json!({
            "code": exit_code(a),
            "stdout": stream_lines(a, false, 0),
            "stderr": stream_lines(a, true, 0),
            "timedOut": timed_out(a),
            "execTime": a.result.timings_ms.run,
            "okToCache": ok_to_cache(a),
        })
    };
    let mut result = match compile {
        Some(c) => {
            let mut r = build(c);
            r["asm"] = json!(asm_lines(meta, request, c));
            r["compilationOptions"] = json!(compilation_options(&c.result.argv));
            r
        }
        None => json!({"code": 0, "stdout": [], "stderr": [], "timedOut": false, "execTime": 0,
                       "okToCache": true, "asm": [], "compilationOptions": []}),
    };
    result["inputFilename"] =
        json!(meta.compiler_explorer.as_ref().map(|ce| ce.source.clone()).unwrap_or_default());
    let build_result = compile.map(build).unwrap_or_else(
        || json!({"code": 0, "stdout": [], "stderr": [], "timedOut": false, "execTime": 0}),
    );
    let exec = match execute {
        Some(e) => {
            // The execute run compiles again: its stderr starts with what the compile printed.
            let skip =
                compile.filter(|c| e.stderr.starts_with(&c.stderr)).map_or(0, |c| c.stderr.len());
            Some(json!({
                "code": exit_code(e),
                "stdout": stream_lines(e, false, 0),
                "stderr": stream_lines(e, true, skip),
                "didExecute": true,
                "buildResult": build_result,
                "execTime": e.result.timings_ms.run,
                "timedOut": timed_out(e),
                "okToCache": ok_to_cache(e),
            }))
        }
        None if request.filter("execute") => Some(json!({
            "code": -1,
            "stdout": [],
            "stderr": [{"text": "Build failed"}],
            "didExecute": false,
            "buildResult": build_result,
            "execTime": 0,
            "timedOut": false,
            "okToCache": true,
        })),
        None => None,
    };
    if let Some(exec) = exec {
        result["didExecute"] = exec["didExecute"].clone();
        result["execResult"] = exec;
    }
    result
}

fn texts(lines: &Value) -> String {
    lines
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn non_empty(lines: &Value) -> bool {
    lines.as_array().is_some_and(|l| !l.is_empty())
}

/// Compiler Explorer's plain-text answer: the assembly, then the compiler's exit code and
/// output when there is something to say, then the execution's.
pub fn text_result(result: &Value) -> String {
    let mut out = texts(&result["asm"]);
    let code = result["code"].as_i64().unwrap_or(0);
    if code != 0 {
        out.push_str(&format!("\n# Compiler exited with result code {code}"));
    }
    if non_empty(&result["stdout"]) {
        out.push_str(&format!("\nStandard out:\n{}", texts(&result["stdout"])));
    }
    if non_empty(&result["stderr"]) {
        out.push_str(&format!("\nStandard error:\n{}", texts(&result["stderr"])));
    }
    let exec = &result["execResult"];
    if exec.is_object() {
        out.push_str(&format!(
            "\n\n# Execution result with exit code {}\n",
            exec["code"].as_i64().unwrap_or(-1)
        ));
        if non_empty(&exec["stdout"]) {
            out.push_str(&format!("# Standard out:\n{}", texts(&exec["stdout"])));
        }
        if non_empty(&exec["stderr"]) {
            out.push_str(&format!("\n# Standard error:\n{}", texts(&exec["stderr"])));
        }
    }
    out.push('\n');
    out
}

// ---- languages and compilers --------------------------------------------------------------

/// The fields `/api/languages` and `/api/compilers` give by default (Compiler Explorer's list).
pub const DEFAULT_FIELDS: &[&str] =
    &["id", "name", "lang", "compilerType", "semver", "extensions", "monaco", "instructionSet"];

/// One compiler as `/api/compilers` lists it (all of its fields).
pub fn compiler_info(meta: &ContainerMeta, ce: &CompilerExplorer) -> Value {
    let extensions: Vec<String> = meta.inputs.extensions.iter().map(|e| format!(".{e}")).collect();
    json!({
        "id": ce.compiler_id(meta),
        "name": format!("{} {}", meta.name, meta.version),
        "lang": ce.language,
        "compilerType": if ce.execute_option.is_some() { "gcc" } else { "interpreted" },
        "semver": meta.version,
        "extensions": extensions,
        "monaco": ce.monaco.clone().unwrap_or_else(|| ce.language.clone()),
        "instructionSet": if meta.assembly.is_some() { "amd64" } else { "" },
        "supportsExecute": true,
        "supportsBinary": false,
        "supportsIntel": meta.assembly.as_ref().is_some_and(|a| a.intel_option.is_some()),
        "supportsDemangle": meta.assembly.is_some(),
        "interpreted": ce.execute_option.is_none(),
        "description": meta.description,
        "programExplorerContainer": meta.id,
    })
}

/// One language as `/api/languages` lists it, with its default (first) compiler.
pub fn language_info(
    ce: &CompilerExplorer,
    extensions: &[String],
    default_compiler: &str,
) -> Value {
    json!({
        "id": ce.language,
        "name": ce.language_name,
        "extensions": extensions.iter().map(|e| format!(".{e}")).collect::<Vec<_>>(),
        "monaco": ce.monaco.clone().unwrap_or_else(|| ce.language.clone()),
        "defaultCompiler": default_compiler,
    })
}

/// `?fields=`: `all`, a comma-separated list, or (absent) [`DEFAULT_FIELDS`].
pub fn pick_fields(list: Vec<Value>, fields: Option<&str>) -> Vec<Value> {
    let wanted: Vec<&str> = match fields {
        Some("all") => return list,
        Some(f) => f.split(',').map(str::trim).collect(),
        None => DEFAULT_FIELDS.to_vec(),
    };
    list.into_iter()
        .map(|item| {
            let picked: serde_json::Map<String, Value> = wanted
                .iter()
                .filter_map(|f| item.get(*f).map(|v| ((*f).to_owned(), v.clone())))
                .collect();
            Value::Object(picked)
        })
        .collect()
}

/// The plain-text table: `Id | Name` (`title` names the first column).
pub fn text_table(list: &[Value], title: &str) -> String {
    let ids: Vec<&str> = list.iter().map(|i| i["id"].as_str().unwrap_or("")).collect();
    let width = ids.iter().map(|i| i.chars().count()).chain([title.len()]).max().unwrap_or(0);
    let mut out = format!("{title:width$} | Name\n");
    let rows: Vec<String> = list
        .iter()
        .zip(&ids)
        .map(|(item, id)| format!("{id:width$} | {}", item["name"].as_str().unwrap_or("")))
        .collect();
    out.push_str(&rows.join("\n"));
    out
}

// ---- client state -------------------------------------------------------------------------

/// What a Compiler Explorer state says, as far as a playground can hold it: the compiler, its
/// arguments, the source and the execution's arguments and stdin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientState {
    pub compiler: String,
    pub language: String,
    pub source: String,
    pub options: String,
    pub execute_args: String,
    pub stdin: Option<String>,
}

impl ClientState {
    /// From a `ClientState` (`{"sessions": [...]}`) or a layout (`{"content": [...]}`, possibly
    /// under `config`): the first session's (or editor's) source and first compiler.
    pub fn parse(value: &Value) -> Result<ClientState, RequestError> {
        let value = value.get("config").unwrap_or(value);
        if let Some(session) = value.get("sessions").and_then(|s| s.get(0)) {
            let compiler = session.get("compilers").and_then(|c| c.get(0));
            let executor = session.get("executors").and_then(|e| e.get(0));
            // A string, or (as some clients send `arguments`) a list of them.
            let str_of = |v: Option<&Value>, key: &str| match v.and_then(|v| v.get(key)) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(list)) => join_arguments(
                    &list.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>(),
                ),
                _ => String::new(),
            };
            let compiler_id = match compiler {
                Some(c) => str_of(Some(c), "id"),
                None => executor
                    .and_then(|e| e.get("compiler"))
                    .map(|c| str_of(Some(c), "id"))
                    .unwrap_or_default(),
            };
            return Ok(ClientState {
                compiler: compiler_id,
                language: str_of(Some(session), "language"),
                source: str_of(Some(session), "source"),
                options: str_of(compiler, "options"),
                execute_args: str_of(executor, "arguments"),
                stdin: executor
                    .and_then(|e| e.get("stdin"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        if value.get("content").is_some() {
            let mut state = ClientState::default();
            walk_layout(value, &mut state, 0);
            if state.compiler.is_empty() && state.source.is_empty() {
                return Err(RequestError::Invalid("the layout has no editor or compiler".into()));
            }
            return Ok(state);
        }
        Err(RequestError::Invalid("neither sessions nor a layout (content)".into()))
    }

    /// As Compiler Explorer's `ClientState`.
    pub fn to_json(&self) -> Value {
        json!({"sessions": [{
            "id": 1,
            "language": self.language,
            "source": self.source,
            "compilers": [{"id": self.compiler, "options": self.options, "filters": {}, "libs": []}],
            "executors": if self.execute_args.is_empty() && self.stdin.is_none() { json!([]) } else {
                json!([{"arguments": self.execute_args, "stdin": self.stdin.clone().unwrap_or_default(),
                        "compiler": {"id": self.compiler, "options": self.options}}])
            },
        }]})
    }

    /// The playground this state opens: the container whose compiler id it names.
    pub fn to_playground<'a>(
        &self,
        find: impl Fn(&str) -> Option<&'a ContainerMeta>,
    ) -> Result<PlaygroundState, RequestError> {
        let meta = find(&self.compiler).ok_or_else(|| {
            RequestError::Invalid(format!("unknown compiler {:?}", self.compiler))
        })?;
        let ce = meta.compiler_explorer.as_ref().ok_or_else(|| {
            RequestError::Invalid(format!("{} is not a Compiler Explorer compiler", meta.id))
        })?;
        let request = CompileRequest {
            source: self.source.clone(),
            user_arguments: split_arguments(&self.options),
            execute_args: split_arguments(&self.execute_args),
            stdin: self.stdin.clone(),
            filters: ["execute".to_owned()].into(),
            ..CompileRequest::default()
        };
        let plan = request.runs(meta, ce)?;
        // The playground shows the execute setup when there is one (compile and run), else the
        // compile setup.
        let run = plan.execute.clone().or(plan.compile.clone()).unwrap_or_default();
        let files = if plan.execute.is_some() { plan.execute_files } else { plan.files };
        let mut options = run.options;
        // Show the assembly in the playground as Compiler Explorer would.
        if let Some(asm) = &meta.assembly {
            options.insert(asm.option.clone(), json!(true));
        }
        Ok(PlaygroundState {
            container: meta.id.clone(),
            options,
            args: run.args,
            files,
            stdin: run.stdin,
            ..PlaygroundState::default()
        })
    }

    /// Back from a stored playground (for `/api/shortlinkinfo/{id}`).
    pub fn from_playground(state: &PlaygroundState, meta: Option<&ContainerMeta>) -> ClientState {
        let ce = meta.and_then(|m| m.compiler_explorer.as_ref());
        let source_name = ce.map(|ce| ce.source.as_str());
        let file_text = |name: &str| {
            state.files.iter().find(|f| f.path == name).and_then(|f| f.content.clone())
        };
        let source = source_name
            .and_then(file_text)
            .or_else(|| state.files.first().and_then(|f| f.content.clone()))
            .unwrap_or_default();
        let interpreter = ce.is_some_and(|ce| ce.execute_option.is_none());
        let join = join_arguments;
        let program_args = file_text(PROGRAM_ARGS_FILE)
            .map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        ClientState {
            compiler: match (meta, ce) {
                (Some(m), Some(ce)) => ce.compiler_id(m).to_owned(),
                _ => state.container.clone(),
            },
            language: ce.map(|ce| ce.language.clone()).unwrap_or_default(),
            source,
            options: if interpreter { String::new() } else { join(&state.args) },
            execute_args: if interpreter { join(&state.args) } else { join(&program_args) },
            stdin: state.stdin.clone(),
        }
    }
}

/// Arguments as one string that [`split_arguments`] splits back into them.
pub fn join_arguments(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "\"'\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\"'\"'"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first editor's source and the first compiler's id and options in a layout tree.
fn walk_layout(node: &Value, state: &mut ClientState, depth: usize) {
    if depth > 32 {
        return;
    }
    let component = node.get("componentName").and_then(Value::as_str).unwrap_or("");
    let cs = node.get("componentState");
    let text = |key: &str| cs.and_then(|s| s.get(key)).and_then(Value::as_str).map(str::to_owned);
    match component {
        "codeEditor" if state.source.is_empty() => {
            state.source = text("source").unwrap_or_default();
            state.language = text("lang").unwrap_or_default();
        }
        "compiler" if state.compiler.is_empty() => {
            state.compiler = text("compiler").unwrap_or_default();
            state.options = text("options").unwrap_or_default();
        }
        "executor" if state.execute_args.is_empty() => {
            state.execute_args =
                text("compilerArgs").or_else(|| text("execArgs")).unwrap_or_default();
            state.stdin = text("execStdin");
        }
        _ => {}
    }
    for child in node.get("content").and_then(Value::as_array).into_iter().flatten() {
        walk_layout(child, state, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_a_shell() {
        assert_eq!(
            split_arguments(r#"-O1 -monkey "badger badger""#),
            ["-O1", "-monkey", "badger badger"]
        );
        assert_eq!(split_arguments("  -a   'b c'd \\ e \"\""), ["-a", "b cd", " e", ""]);
        assert!(split_arguments("   ").is_empty());
    }

    #[test]
    fn joined_arguments_split_back() {
        let args: Vec<String> =
            ["a", "two words", "", "it's", "q\"uote", "back\\slash"].map(str::to_owned).to_vec();
        assert_eq!(split_arguments(&join_arguments(&args)), args);
        assert_eq!(
            compilation_options(&[
                "sh".into(),
                "-c".into(),
                "x".into(),
                "gcc".into(),
                "-O2".into()
            ]),
            ["gcc", "-O2"]
        );
    }

    #[test]
    fn filters_are_set_then_added_then_removed() {
        let set = |f: Option<&str>, a: Option<&str>, r: Option<&str>| -> Vec<String> {
            query_filters(f, a, r).into_iter().collect()
        };
        assert_eq!(set(Some("a,b,c"), None, Some("b,c,d")), ["a"]);
        assert_eq!(set(Some("a"), Some("e,f"), None), ["a", "e", "f"]);
        assert_eq!(set(Some("a,b,c"), Some("c,g,h"), Some("b,c,d,h")), ["a", "g"]);
        assert!(set(None, None, None).contains(&"directives".to_owned()));
    }

    #[test]
    fn json_requests_need_source_and_options() {
        assert_eq!(
            CompileRequest::from_json(br#"{"source": "x"}"#),
            Err(RequestError::MissingOptions)
        );
        assert_eq!(
            CompileRequest::from_json(br#"{"options": {}}"#),
            Err(RequestError::MissingSource)
        );
        let r = CompileRequest::from_json(
            br#"{"source": "int x;", "options": {"userArguments": "-O1 -monkey \"badger badger\"",
                 "filters": {"execute": true, "intel": false},
                 "executeParameters": {"args": ["a b", "c"], "stdin": "in"}},
                 "files": [{"filename": "x.h", "contents": "int y;"}], "bypassCache": 1}"#,
        )
        .unwrap();
        assert_eq!(r.user_arguments, ["-O1", "-monkey", "badger badger"]);
        assert!(r.filter("execute") && !r.filter("intel") && r.filter("directives"));
        assert_eq!(r.execute_args, ["a b", "c"]);
        assert_eq!(r.stdin.as_deref(), Some("in"));
        assert_eq!(r.files, [("x.h".to_owned(), "int y;".to_owned())]);
        assert!(r.bypass_cache);
        let s = CompileRequest::from_json(
            br#"{"source": "", "options": {"executeParameters": {"args": "-v 'x y'"}}}"#,
        )
        .unwrap();
        assert_eq!(s.execute_args, ["-v", "x y"]);
    }

    #[test]
    fn client_states_and_layouts() {
        let state = json!({"sessions": [{"id": 1, "language": "c", "source": "int main;",
            "compilers": [{"id": "gcc", "options": "-O2"}],
            "executors": [{"arguments": "1 2", "stdin": "x", "compiler": {"id": "gcc"}}]}]});
        let cs = ClientState::parse(&state).unwrap();
        assert_eq!(
            (cs.compiler.as_str(), cs.options.as_str(), cs.execute_args.as_str()),
            ("gcc", "-O2", "1 2")
        );
        let layout = json!({"config": {"content": [{"type": "row", "content": [
            {"type": "component", "componentName": "codeEditor", "componentState": {"source": "int a;", "lang": "c"}},
            {"type": "component", "componentName": "compiler", "componentState": {"compiler": "gcc", "options": "-O3"}}]}]}});
        let cs = ClientState::parse(&layout).unwrap();
        assert_eq!(
            (cs.source.as_str(), cs.compiler.as_str(), cs.options.as_str()),
            ("int a;", "gcc", "-O3")
        );
        assert!(ClientState::parse(&json!({"nothing": 1})).is_err());
        assert!(ClientState::parse(&json!({"content": []})).is_err());
    }

    #[test]
    fn diagnostics_tag_the_lines_that_carry_them() {
        use shared::diagnostics::Stream;
        let d = Diagnostic {
            path: "main.c".into(),
            line: 3,
            column: 5,
            end_line: Some(3),
            end_column: Some(11),
            severity: Severity::Error,
            message: "expected ';'".into(),
            stream: Stream::Stderr,
        };
        let lines =
            result_lines("main.c: In function 'main':\nmain.c:3:5: error: expected ';'\n", &[&d]);
        assert_eq!(lines[0], json!({"text": "main.c: In function 'main':"}));
        assert_eq!(
            lines[1]["tag"],
            json!({"line": 3, "column": 5, "endline": 3, "endcolumn": 11, "file": "main.c",
                   "text": "expected ';'", "severity": 3})
        );
    }

    #[test]
    fn the_text_layout() {
        let result = json!({"code": 1, "asm": [{"text": "main:"}], "stdout": [],
            "stderr": [{"text": "main.c:1:1: error: x"}],
            "execResult": {"code": 3, "stdout": [{"text": "hi"}], "stderr": []}});
        assert_eq!(
            text_result(&result),
            "main:\n# Compiler exited with result code 1\nStandard error:\nmain.c:1:1: error: x\n\n# Execution result with exit code 3\n# Standard out:\nhi\n"
        );
        let table = text_table(
            &[json!({"id": "c++", "name": "C++"}), json!({"id": "c", "name": "C"})],
            "Id",
        );
        assert_eq!(table, "Id  | Name\nc++ | C++\nc   | C");
    }
}
