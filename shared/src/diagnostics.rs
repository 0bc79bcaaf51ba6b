//! Diagnostics: the errors and warnings a tool printed, with the file, line and column they are
//! about, so the browser can show them in the editor (squiggles, hover text, a list).
//! (Over 600 lines with its tests: the built-in formats' parsers and the regex one share a model.)
//!
//! A container's metadata names how its tool reports problems (the `[diagnostics]` table, a
//! [`DiagnosticsSpec`]): one of the built-in [`Format`]s or regular expressions with named groups.
//! [`parse`] reads the run's stdout and stderr with it; the server calls it when it builds a
//! result (so cached results carry them too), and the browser may call it as well.
//!
//! The built-in formats:
//! - [`Format::Gcc`]: `file:line:col: severity: message` and `file:line: message` (gcc, g++,
//!   clang, `shellcheck -f gcc` and many linters). The source line and caret that gcc prints
//!   under a diagnostic (`  3 |     return y;` / `    |     ^~~~~~`) give its end column.
//! - [`Format::Python`]: tracebacks (the error at the innermost frame in an input file, a note
//!   at each outer one), `SyntaxError`s with their caret, and `file:line: XWarning: message`.
//! - [`Format::Node`]: the `file:line` / source / caret block node prints for an uncaught error
//!   or a syntax error, with the error's message, and notes for the input files' stack frames.
//! - [`Format::Lua`]: `lua: file:line: message` and the `file:line:` entries of its traceback.
//!
//! The program runs in its working directory (`/input`), so paths are made relative to it
//! (`/input/main.py` and `./main.py` become `main.py`), the names of the input files. A path
//! outside it stays absolute; the browser ignores diagnostics for files it does not have.
//!
//! Bounded: at most [`MAX_DIAGNOSTICS`] diagnostics, each message at most [`MAX_MESSAGE_BYTES`];
//! lines longer than [`MAX_LINE_BYTES`] are skipped. Output is untrusted (the program writes
//! what it likes), so nothing here may panic or take more than linear time on it.

use serde::{Deserialize, Serialize};

/// At most this many diagnostics per run.
pub const MAX_DIAGNOSTICS: usize = 1000;
/// A longer message is cut at a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 2048;
/// Longer lines are not parsed (no tool prints a diagnostic that long).
pub const MAX_LINE_BYTES: usize = 8192;

/// One problem a tool reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diagnostic {
    /// The file, relative to the working directory when it is inside it (`main.c`).
    pub path: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column; 0 when the tool gave none (the diagnostic covers the whole line).
    pub column: u32,
    /// Where the marked range ends (inclusive line, exclusive 1-based column), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u32>,
    pub severity: Severity,
    pub message: String,
    /// Where the tool printed it.
    pub stream: Stream,
}

/// How bad it is. `fatal error` is an error; shellcheck's `info` and `style` are notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    Error,
    Warning,
    Note,
    Info,
}

impl Severity {
    /// A tool's word for a severity (case-insensitive): `error`, `fatal error`, `warning`,
    /// `note`, `info`, `style`, ...; `None` for anything else.
    pub fn from_word(word: &str) -> Option<Severity> {
        let word = word.trim().to_ascii_lowercase();
        Some(match word.as_str() {
            "error"
            | "fatal error"
            | "parse error"
            | "fatal"
            | "f"
            | "err"
            | "e"
            | "critical"
            | "sorry, unimplemented" => Severity::Error,
            "warning" | "warn" | "w" | "deprecated" => Severity::Warning,
            "note" | "n" | "notice" | "remark" | "style" | "hint" => Severity::Note,
            "info" | "information" | "i" => Severity::Info,
            _ => return None,
        })
    }
}

/// Which output a diagnostic came from, or which outputs a spec reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The built-in output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Format {
    Gcc,
    Python,
    Node,
    Lua,
}

/// One regular expression or several (tried in order on each line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Patterns::One(p) => std::slice::from_ref(p),
            Patterns::Many(ps) => ps,
        }
    }
}

/// The `[diagnostics]` table of a container's metadata: a built-in `format`, or `regex`
/// patterns with named groups, read from one stream or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiagnosticsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Matched against each line; named groups `path`, `line` (required), `column`,
    /// `end_line`, `end_column`, `severity`, `message` (the whole line without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<Patterns>,
    /// Only this stream; both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    /// The file of a regex match without a `path` group (a tool that reads one fixed file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The severity of a regex match without a `severity` group (or with a word not known);
    /// `error` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The tool counts columns from 0 (pylint): one is added to the `column` group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_based_columns: bool,
}

/// A spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("[diagnostics] needs exactly one of `format` and `regex`")]
    FormatOrRegex,
    #[error("[diagnostics] regex {pattern:?} does not compile: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error("[diagnostics] regex {pattern:?} has no `line` group")]
    NoLineGroup { pattern: String },
    #[error("[diagnostics] regex {pattern:?} has no `path` group and the table gives no `path`")]
    NoPath { pattern: String },
    #[error("[diagnostics] regex needs the `regex` feature of the shared crate")]
    RegexUnavailable,
}

/// The file contents a parser may look at to turn a caret under a re-indented source line into
/// a column (Python prints the line without its indentation): `path -> text`.
pub type Sources<'a> = &'a dyn Fn(&str) -> Option<&'a str>;

/// No sources: columns that would need them are left out (0).
pub fn no_sources(_: &str) -> Option<&'static str> {
    None
}

impl DiagnosticsSpec {
    /// Checks the spec: one of format and regex; every regex compiles and has the groups.
    pub fn validate(&self) -> Result<(), SpecError> {
        match (&self.format, &self.regex) {
            (Some(_), None) => Ok(()),
            (None, Some(patterns)) => compile(patterns, self.path.is_some()).map(drop),
            _ => Err(SpecError::FormatOrRegex),
        }
    }
}

/// The diagnostics in a run's output. `cwd` is the program's working directory (paths inside
/// it are made relative to it).
pub fn parse(
    spec: &DiagnosticsSpec,
    cwd: &str,
    stdout: &str,
    stderr: &str,
    sources: Sources<'_>,
) -> Result<Vec<Diagnostic>, SpecError> {
    let streams = [(Stream::Stdout, stdout), (Stream::Stderr, stderr)];
    let mut out = Out { cwd: cwd.to_owned(), list: Vec::new(), sources };
    let regexes = match (&spec.format, &spec.regex) {
        (Some(_), None) => None,
        (None, Some(patterns)) => Some(compile(patterns, spec.path.is_some())?),
        _ => return Err(SpecError::FormatOrRegex),
    };
    for (stream, text) in streams {
        if spec.stream.is_some_and(|s| s != stream) {
            continue;
        }
        let lines: Vec<&str> = text.lines().map(strip_cr).collect();
        match (spec.format, &regexes) {
            (Some(Format::Gcc), _) => gcc(&lines, stream, &mut out),
            (Some(Format::Python), _) => python(&lines, stream, &mut out),
            (Some(Format::Node), _) => node(&lines, stream, &mut out),
            (Some(Format::Lua), _) => lua(&lines, stream, &mut out),
            (None, Some(regexes)) => regex_lines(regexes, spec, &lines, stream, &mut out),
            (None, None) => {}
        }
    }
    Ok(out.list)
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// The diagnostics found so far, bounded.
struct Out<'a> {
    cwd: String,
    list: Vec<Diagnostic>,
    sources: Sources<'a>,
}

impl Out<'_> {
    fn push(&mut self, mut d: Diagnostic) {
        if self.list.len() >= MAX_DIAGNOSTICS || d.line == 0 {
            return;
        }
        d.path = relative(&self.cwd, &d.path);
        if d.path.is_empty() {
            return;
        }
        d.message = truncate(d.message.trim_end(), MAX_MESSAGE_BYTES).to_owned();
        if self.list.last() == Some(&d) {
            return;
        }
        self.list.push(d);
    }

    fn source_line(&self, path: &str, line: u32) -> Option<&str> {
        let text = (self.sources)(&relative(&self.cwd, path))?;
        text.lines().nth(usize::try_from(line).ok()?.checked_sub(1)?)
    }
}

/// `path` relative to `cwd` when it is inside it, without `./`.
pub fn relative(cwd: &str, path: &str) -> String {
    let cwd = cwd.trim_end_matches('/');
    let mut path = path.trim();
    if !cwd.is_empty()
        && let Some(rest) = path.strip_prefix(cwd).and_then(|r| r.strip_prefix('/'))
    {
        path = rest;
    }
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.trim_start_matches('/');
    }
    path.to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A location at the start of a line: `path:line:col:` or `path:line:` (or, with `bare`, the
/// line ends after the number: `path:line`). Returns path, line, column (0 if none) and the
/// rest after the colon. The path is the shortest prefix that works, is not empty and does not
/// start with white space.
fn location(line: &str, bare: bool) -> Option<(&str, u32, u32, &str)> {
    if line.len() > MAX_LINE_BYTES || line.starts_with(char::is_whitespace) {
        return None;
    }
    for (i, _) in line.match_indices(':').filter(|(i, _)| *i > 0) {
        let after = &line[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let Some(num) = number(&after[..digits]) else { continue };
        let rest = &after[digits..];
        if rest.is_empty() {
            if bare {
                return Some((&line[..i], num, 0, ""));
            }
            continue;
        }
        let Some(rest) = rest.strip_prefix(':') else { continue };
        let col_digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(col) = number(&rest[..col_digits])
            && let Some(tail) = rest[col_digits..].strip_prefix(':')
        {
            return Some((&line[..i], num, col, tail));
        }
        return Some((&line[..i], num, 0, rest));
    }
    None
}

// ---- gcc ----------------------------------------------------------------------------------

/// The severity word at the start of a gcc message, and the message after it.
fn gcc_severity(rest: &str) -> Option<(Severity, &str)> {
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    for word in [
        "fatal error",
        "error",
        "warning",
        "note",
        "remark",
        "info",
        "style",
        "sorry, unimplemented",
    ] {
        if let Some(message) = rest.strip_prefix(word).and_then(|r| r.strip_prefix(':')) {
            return Some((Severity::from_word(word)?, message.trim_start()));
        }
    }
    None
}

fn gcc(lines: &[&str], stream: Stream, out: &mut Out) {
    for (i, line) in lines.iter().enumerate() {
        let Some((path, line_no, column, rest)) = location(line, false) else { continue };
        let (severity, message) = match gcc_severity(rest) {
            Some(found) => found,
            // `file:line: message`: a continuation (`   required from here`) is a note.
            None if path.contains(char::is_whitespace) => continue,
            None if rest.starts_with("  ") => (Severity::Note, rest.trim_start()),
            None => (Severity::Error, rest.trim_start()),
        };
        let end_column = (column > 0).then(|| caret_end(lines, i + 1, column)).flatten();
        out.push(Diagnostic {
            path: path.to_owned(),
            line: line_no,
            column,
            end_line: end_column.map(|_| line_no),
            end_column,
            severity,
            message: message.to_owned(),
            stream,
        });
    }
}

/// gcc's source excerpt under a diagnostic: `  3 |     return y;` then `    |     ^~~~~~`.
/// The end column is the caret's column plus the length of the marked run after it.
fn caret_end(lines: &[&str], at: usize, column: u32) -> Option<u32> {
    let source = lines.get(at)?;
    let marks = lines.get(at + 1)?;
    let (number, _) = source.split_once(" | ")?;
    if number.trim().parse::<u32>().is_err() {
        return None;
    }
    let (gutter, marked) = marks.split_once(" |")?;
    if !gutter.trim().is_empty() {
        return None;
    }
    let marked = marked.strip_prefix(' ')?;
    let caret = marked.find('^')?;
    let run = marked[caret..].bytes().take_while(|b| matches!(b, b'^' | b'~')).count();
    column.checked_add(u32::try_from(run).ok()?)
}

// ---- python -------------------------------------------------------------------------------

/// `  File "path", line N` (and `, in name`): path, line, function.
fn python_frame(line: &str) -> Option<(&str, u32, Option<&str>)> {
    let rest = line.strip_prefix("  File \"")?;
    let (path, rest) = rest.split_once("\", line ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = number(&rest[..digits])?;
    let rest = &rest[digits..];
    let function = rest.strip_prefix(", in ");
    if function.is_none() && !rest.is_empty() {
        return None;
    }
    Some((path, number, function))
}

/// Whether a path names an input file (relative to the working directory), not the standard
/// library or `<string>`.
fn is_input(cwd: &str, path: &str) -> bool {
    let rel = relative(cwd, path);
    !rel.is_empty() && !rel.starts_with('/') && !rel.starts_with('<') && !rel.starts_with("node:")
}

fn python(lines: &[&str], stream: Stream, out: &mut Out) {
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        // `path:line: SomeWarning: message`
        if let Some((path, line_no, 0, rest)) = location(line, false)
            && let Some((category, message)) = rest.trim_start().split_once(": ")
            && category.ends_with("Warning")
            && !category.contains(char::is_whitespace)
        {
            out.push(Diagnostic {
                path: path.to_owned(),
                line: line_no,
                column: 0,
                end_line: None,
                end_column: None,
                severity: Severity::Warning,
                message: format!("{category}: {message}"),
                stream,
            });
            i += 1;
            continue;
        }
        if python_frame(line).is_none() {
            i += 1;
            continue;
        }
        // A run of frames, each followed by its source and marker lines, then the exception.
        let mut frames = Vec::new();
        let mut caret = None;
        while i < lines.len() {
            let line = lines[i];
            if let Some(frame) = python_frame(line) {
                frames.push(frame);
                caret = None;
            } else if line.starts_with("    ") {
                let marks = line.trim();
                if !marks.is_empty() && marks.bytes().all(|b| matches!(b, b'^' | b'~')) {
                    caret = Some((i, line));
                }
            } else if !line.trim().is_empty() {
                break;
            }
            i += 1;
        }
        let Some(exception) = lines.get(i).map(|l| l.trim()) else { break };
        if exception.starts_with("Traceback") || exception.starts_with("During handling") {
            continue;
        }
        let message = exception.to_owned();
        let Some(innermost) = frames.iter().rposition(|(path, _, _)| is_input(&out.cwd, path))
        else {
            continue;
        };
        let (path, line_no, _) = frames[innermost];
        let mut column = 0;
        let mut end_column = None;
        // A syntax error's caret (and 3.11's markers) is under the line as printed: stripped of
        // its indentation and indented by four. The file gives the indentation back.
        if innermost == frames.len() - 1
            && let Some((at, marks)) = caret
            && let Some(source) = out.source_line(path, line_no)
        {
            let printed = lines.get(at - 1).copied().unwrap_or("");
            let indent = source.len() - source.trim_start().len();
            let shown = printed.len() - printed.trim_start().len();
            let start = marks.len() - marks.trim_start().len();
            let width = marks.trim().len();
            if start >= shown && printed.trim() == source.trim() {
                column = u32::try_from(start - shown + indent + 1).unwrap_or(0);
                end_column = u32::try_from(width).ok().map(|w| column + w);
            }
        }
        out.push(Diagnostic {
            path: path.to_owned(),
            line: line_no,
            column,
            end_line: end_column.map(|_| line_no),
            end_column,
            severity: Severity::Error,
            message: message.clone(),
            stream,
        });
        for &(path, line_no, function) in frames[..innermost].iter().rev() {
            if is_input(&out.cwd, path) {
                out.push(Diagnostic {
                    path: path.to_owned(),
                    line: line_no,
                    column: 0,
                    end_line: None,
                    end_column: None,
                    severity: Severity::Note,
                    message: format!("traceback (in {}): {message}", function.unwrap_or("?")),
                    stream,
                });
            }
        }
        i += 1;
    }
}

// ---- node ---------------------------------------------------------------------------------

/// `    at name (path:line:col)` or `    at path:line:col`: path, line, column.
fn node_frame(line: &str) -> Option<(&str, u32, u32)> {
    let rest = line.trim_start().strip_prefix("at ")?;
    let inner = match rest.rfind(" (") {
        Some(open) => rest[open + 2..].strip_suffix(')')?,
        None => rest,
    };
    let inner = inner.strip_prefix("file://").unwrap_or(inner);
    let (head, column) = inner.rsplit_once(':')?;
    let (path, line) = head.rsplit_once(':')?;
    Some((path, number(line)?, number(column)?))
}

fn node(lines: &[&str], stream: Stream, out: &mut Out) {
    let mut i = 0;
    while i < lines.len() {
        // `path:line`, the source line, the caret, then (after a blank line) the message.
        let Some((path, line_no, 0, "")) = location(lines[i], true) else {
            i += 1;
            continue;
        };
        let Some(caret_line) = lines.get(i + 2) else { break };
        let marks = caret_line.trim_end();
        if marks.trim().is_empty() || !marks.trim().bytes().all(|b| matches!(b, b'^' | b'~')) {
            i += 1;
            continue;
        }
        let start = marks.len() - marks.trim_start().len();
        let column = u32::try_from(start + 1).unwrap_or(0);
        let width = u32::try_from(marks.trim().len()).unwrap_or(1);
        let mut j = i + 3;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        let message = lines.get(j).map(|l| l.trim()).unwrap_or("").to_owned();
        out.push(Diagnostic {
            path: path.to_owned(),
            line: line_no,
            column,
            end_line: (width > 1).then_some(line_no),
            end_column: (width > 1).then_some(column + width),
            severity: Severity::Error,
            message: message.clone(),
            stream,
        });
        j += 1;
        while j < lines.len() && lines[j].trim_start().starts_with("at ") {
            if let Some((frame_path, frame_line, frame_column)) = node_frame(lines[j])
                && is_input(&out.cwd, frame_path)
                && !(relative(&out.cwd, frame_path) == relative(&out.cwd, path)
                    && frame_line == line_no)
            {
                out.push(Diagnostic {
                    path: frame_path.to_owned(),
                    line: frame_line,
                    column: frame_column,
                    end_line: None,
                    end_column: None,
                    severity: Severity::Note,
                    message: format!("stack trace: {message}"),
                    stream,
                });
            }
            j += 1;
        }
        i = j;
    }
}

// ---- lua ----------------------------------------------------------------------------------

fn lua(lines: &[&str], stream: Stream, out: &mut Out) {
    let mut message = None::<String>;
    for line in lines {
        if let Some(entry) = line.strip_prefix('\t') {
            // A traceback entry: `main.lua:5: in main chunk`.
            if let (Some(message), Some((path, line_no, 0, rest))) =
                (&message, location(entry, false))
                && out.list.last().is_none_or(|d| d.line != line_no || d.path != path)
            {
                out.push(Diagnostic {
                    path: path.to_owned(),
                    line: line_no,
                    column: 0,
                    end_line: None,
                    end_column: None,
                    severity: Severity::Note,
                    message: format!("traceback ({}): {message}", rest.trim()),
                    stream,
                });
            }
            continue;
        }
        if line.starts_with("stack traceback:") {
            continue;
        }
        message = None;
        // `lua5.4: main.lua:2: message`; the interpreter's name has no spaces or colons.
        let Some((program, rest)) = line.split_once(": ") else { continue };
        if program.is_empty() || program.contains([' ', ':', '\t']) {
            continue;
        }
        if let Some((path, line_no, 0, text)) = location(rest, false) {
            let text = text.trim_start().to_owned();
            out.push(Diagnostic {
                path: path.to_owned(),
                line: line_no,
                column: 0,
                end_line: None,
                end_column: None,
                severity: Severity::Error,
                message: text.clone(),
                stream,
            });
            message = Some(text);
        }
    }
}

// ---- regex --------------------------------------------------------------------------------

#[cfg(feature = "regex")]
type Compiled = Vec<regex_lite::Regex>;
#[cfg(not(feature = "regex"))]
type Compiled = Vec<()>;

#[cfg(feature = "regex")]
fn compile(patterns: &Patterns, has_path: bool) -> Result<Compiled, SpecError> {
    let mut compiled = Vec::new();
    for pattern in patterns.as_slice() {
        let re = regex_lite::Regex::new(pattern)
            .map_err(|e| SpecError::BadRegex { pattern: pattern.clone(), reason: e.to_string() })?;
        let names: Vec<&str> = re.capture_names().flatten().collect();
        if !names.contains(&"line") {
            return Err(SpecError::NoLineGroup { pattern: pattern.clone() });
        }
        if !names.contains(&"path") && !has_path {
            return Err(SpecError::NoPath { pattern: pattern.clone() });
        }
        compiled.push(re);
    }
    Ok(compiled)
}

#[cfg(not(feature = "regex"))]
fn compile(_: &Patterns, _: bool) -> Result<Compiled, SpecError> {
    Err(SpecError::RegexUnavailable)
}

#[cfg(feature = "regex")]
fn regex_lines(
    regexes: &Compiled,
    spec: &DiagnosticsSpec,
    lines: &[&str],
    stream: Stream,
    out: &mut Out,
) {
    for line in lines {
        if line.len() > MAX_LINE_BYTES {
            continue;
        }
        for re in regexes {
            let Some(caps) = re.captures(line) else { continue };
            let group = |name| caps.name(name).map(|m| m.as_str());
            let Some(line_no) = group("line").and_then(number) else { continue };
            let Some(path) = group("path").or(spec.path.as_deref()) else { continue };
            let severity = group("severity")
                .and_then(Severity::from_word)
                .or(spec.severity)
                .unwrap_or(Severity::Error);
            let message = group("message").unwrap_or(line).trim();
            let column = group("column")
                .and_then(number)
                .map_or(0, |c| c + u32::from(spec.zero_based_columns));
            out.push(Diagnostic {
                path: path.to_owned(),
                line: line_no,
                column,
                end_line: group("end_line").and_then(number),
                end_column: group("end_column").and_then(number),
                severity,
                message: message.to_owned(),
                stream,
            });
            break;
        }
    }
}

#[cfg(not(feature = "regex"))]
fn regex_lines(_: &Compiled, _: &DiagnosticsSpec, _: &[&str], _: Stream, _: &mut Out) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: Format) -> DiagnosticsSpec {
        DiagnosticsSpec {
            format: Some(format),
            regex: None,
            stream: None,
            path: None,
            severity: None,
            zero_based_columns: false,
        }
    }

    fn run(format: Format, stderr: &str) -> Vec<Diagnostic> {
        parse(&spec(format), "/input", "", stderr, &no_sources).unwrap()
    }

    #[test]
    fn paths_are_made_relative_to_the_working_directory() {
        assert_eq!(relative("/input", "/input/main.c"), "main.c");
        assert_eq!(relative("/input/", "./src/a.c"), "src/a.c");
        assert_eq!(relative("/input", "/usr/include/stdio.h"), "/usr/include/stdio.h");
        assert_eq!(relative("/input", "/inputs/x.c"), "/inputs/x.c");
        assert_eq!(relative("/input", ".//x.c"), "x.c");
    }

    #[test]
    fn gcc_lines_with_and_without_columns() {
        let d = run(
            Format::Gcc,
            "x.c:3:5: error: boom\nx.c:7: warning: no column\nlint.py:9: plain message\n\
             In file included from x.c:2:\nx.c:(.text+0x9): undefined reference to `f'\n",
        );
        let got: Vec<_> =
            d.iter().map(|d| (d.path.as_str(), d.line, d.column, d.severity)).collect();
        assert_eq!(
            got,
            [
                ("x.c", 3, 5, Severity::Error),
                ("x.c", 7, 0, Severity::Warning),
                ("lint.py", 9, 0, Severity::Error),
            ]
        );
        assert_eq!(d[1].message, "no column");
    }

    #[test]
    fn a_user_regex_with_named_groups() {
        let spec = DiagnosticsSpec {
            format: None,
            regex: Some(Patterns::One(
                r"^(?P<severity>\w+) at line (?P<line>\d+), col (?P<column>\d+): (?P<message>.*)$"
                    .into(),
            )),
            stream: Some(Stream::Stdout),
            path: Some("query.sql".into()),
            severity: None,
            zero_based_columns: false,
        };
        spec.validate().unwrap();
        let d = parse(
            &spec,
            "/input",
            "Warning at line 4, col 2: hmm\nnoise\n",
            "Error at line 1, col 1: no\n",
            &no_sources,
        )
        .unwrap();
        assert_eq!(d.len(), 1, "stderr is not read: {d:?}");
        assert_eq!(
            d[0],
            Diagnostic {
                path: "query.sql".into(),
                line: 4,
                column: 2,
                end_line: None,
                end_column: None,
                severity: Severity::Warning,
                message: "hmm".into(),
                stream: Stream::Stdout,
            }
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let mut spec = spec(Format::Gcc);
        spec.regex = Some(Patterns::One("(?P<line>\\d+)".into()));
        assert_eq!(spec.validate(), Err(SpecError::FormatOrRegex));
        spec.format = None;
        assert!(matches!(spec.validate(), Err(SpecError::NoPath { .. })));
        spec.regex = Some(Patterns::One("(?P<path>x)".into()));
        assert!(matches!(spec.validate(), Err(SpecError::NoLineGroup { .. })));
        spec.regex = Some(Patterns::Many(vec!["(".into()]));
        assert!(matches!(spec.validate(), Err(SpecError::BadRegex { .. })));
    }

    #[test]
    fn output_is_bounded() {
        let many = "a.c:1:1: error: x\na.c:2:1: error: y\n".repeat(MAX_DIAGNOSTICS);
        assert_eq!(run(Format::Gcc, &many).len(), MAX_DIAGNOSTICS);
        let long = format!("a.c:1:1: error: {}\n", "é".repeat(MAX_MESSAGE_BYTES));
        let d = run(Format::Gcc, &long);
        assert!(d[0].message.len() <= MAX_MESSAGE_BYTES);
    }
}
