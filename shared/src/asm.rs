//! The assembly view: GNU assembler output (`gcc -S -g`) turned into lines with the source line
//! each one came from, filtered the way Compiler Explorer filters it.
//!
//! 1. `.file N "name"` (or DWARF 5's `.file N "dir" "name"`) names source files; `.loc N LINE
//!    COL` says that the instructions after it come from that line. Each kept line gets the
//!    source of the last `.loc` (reset at a function's end, a section change and a function's
//!    label), paths made relative to the working directory as in [`crate::diagnostics`].
//! 2. The [`Filters`], each one a toggle of the browser's assembly pane and a Compiler Explorer
//!    filter: `directives` (assembler directives, and the debug sections entirely; data
//!    definitions under a kept label stay, so string constants still show), `labels` (labels
//!    nothing refers to), `comment_only` (lines that are only a comment), `library_code`
//!    (functions none of whose lines come from the main source file, such as the C++ standard
//!    library's templates), `demangle` (C++ names, with `cpp_demangle` behind the `demangle`
//!    feature: the browser looks them up in the map the server sends), `trim` (white space
//!    squeezed). Intel syntax is not a filter but a compiler flag (`-masm=intel`): the metadata
//!    names the option that adds it.
//!
//! Bounded like every decoder of untrusted text: at most [`MAX_LINES`] lines are read, each cut
//! at [`MAX_LINE_BYTES`], and the work is linear in the input.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// More lines than this are not read (the rest is dropped and [`Assembly::truncated`] is set).
pub const MAX_LINES: usize = 200_000;
/// A longer line is cut (at a character boundary).
pub const MAX_LINE_BYTES: usize = 4096;

/// The `[assembly]` table of a compiler's metadata: where its assembly is and how to ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssemblySpec {
    /// The output file holding the assembly, relative to the output directory (`main.s`).
    pub file: String,
    /// The input file it is compiled from (`main.c`): its `.loc` lines are "the source", the
    /// others library code.
    pub source: String,
    /// The `bool` option that asks for the assembly (the run recipe compiles with `-g -S`
    /// when it is on, so that `.loc` lines are there).
    pub option: String,
    /// A `bool` option that switches to Intel syntax (`-masm=intel`), if the compiler has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_option: Option<String>,
}

/// Which lines to hide and how to show the rest. The default is Compiler Explorer's: all on but
/// `trim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Filters {
    pub directives: bool,
    pub labels: bool,
    pub comment_only: bool,
    pub library_code: bool,
    pub demangle: bool,
    pub trim: bool,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            directives: true,
            labels: true,
            comment_only: true,
            library_code: true,
            demangle: true,
            trim: false,
        }
    }
}

impl Filters {
    /// Everything off: the assembly as the compiler wrote it.
    pub const NONE: Filters = Filters {
        directives: false,
        labels: false,
        comment_only: false,
        library_code: false,
        demangle: false,
        trim: false,
    };
}

/// A source line an assembly line came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceRef {
    /// Relative to the working directory when inside it (`main.c`).
    pub file: String,
    /// 1-based.
    pub line: u32,
}

/// One line of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AsmLine {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// The filtered assembly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assembly {
    pub lines: Vec<AsmLine>,
    /// The input had more than [`MAX_LINES`] lines; the rest was not read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Assembly {
    /// The view's line numbers (1-based) whose source is `file:line`: what to highlight when
    /// the cursor is on that source line.
    pub fn lines_for(&self, file: &str, line: u32) -> Vec<usize> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.source.as_ref().is_some_and(|s| s.file == file && s.line == line))
            .map(|(i, _)| i + 1)
            .collect()
    }
}

/// What kind of line it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    /// `name:`; a function's (global) label does not start with `.L`.
    Label,
    Directive,
    /// `.string`, `.long` and the like: data, kept under a kept label.
    Data,
    Instruction,
}

/// One line of the input, classified, with what it needs later.
struct Parsed<'a> {
    text: &'a str,
    kind: Kind,
    label: Option<&'a str>,
    source: Option<(u32, u32)>,
    /// The function block it belongs to (a block starts at a label that is not `.L...`).
    block: usize,
    debug: bool,
}

const DATA: &[&str] = &[
    ".string", ".ascii", ".asciz", ".byte", ".short", ".value", ".word", ".hword", ".long", ".int",
    ".quad", ".octa", ".zero", ".skip", ".space", ".float", ".single", ".double", ".2byte",
    ".4byte", ".8byte", ".dc",
];

/// Parses and filters `text`, the assembly compiled from the input file `source` (its name as
/// the program saw it, e.g. `main.c`), in working directory `cwd`.
#[cfg(feature = "demangle")]
pub fn parse(text: &str, source: &str, cwd: &str, filters: &Filters) -> Assembly {
    parse_with(text, source, cwd, filters, &demangle)
}

/// [`parse`] with the C++ names read by `demangle` (the browser's is a lookup in the run's
/// [`crate::api::v1::RunResult::demangled`]: it carries no demangler).
pub fn parse_with(
    text: &str,
    source: &str,
    cwd: &str,
    filters: &Filters,
    demangle: &dyn Fn(&str) -> Option<String>,
) -> Assembly {
    let mut truncated = false;
    let mut files: BTreeMap<u32, String> = BTreeMap::new();
    let mut parsed = Vec::new();
    let mut section_debug = false;
    let mut current: Option<(u32, u32)> = None;
    let mut block = 0;
    for (n, raw) in text.lines().enumerate() {
        if n >= MAX_LINES {
            truncated = true;
            break;
        }
        let raw = cut(raw.strip_suffix('\r').unwrap_or(raw), MAX_LINE_BYTES);
        let trimmed = raw.trim();
        let (kind, label) = classify(raw);
        let mut line_source = None;
        match kind {
            Kind::Directive => {
                let (name, args) = split_directive(trimmed);
                match name {
                    ".file" => {
                        if let Some((number, path)) = file_directive(args) {
                            files.insert(number, crate::diagnostics::relative(cwd, &path));
                        }
                    }
                    ".loc" => {
                        let mut words = args.split_whitespace();
                        let file = words.next().and_then(|w| w.parse().ok());
                        let line = words.next().and_then(|w| w.parse().ok());
                        current = match (file, line) {
                            (Some(f), Some(l)) if l > 0 => Some((f, l)),
                            _ => None,
                        };
                    }
                    ".cfi_endproc" => current = None,
                    ".text" | ".data" | ".bss" | ".section" | ".pushsection" | ".popsection"
                    | ".previous" => {
                        section_debug = name == ".section"
                            && args.trim_start().starts_with(".debug")
                            || name == ".pushsection" && args.trim_start().starts_with(".debug");
                        current = None;
                    }
                    _ => {}
                }
            }
            Kind::Label => {
                if label.is_some_and(|l| !l.starts_with(".L")) {
                    block += 1;
                    current = None;
                }
            }
            Kind::Instruction => line_source = current,
            Kind::Data => {}
            Kind::Blank | Kind::Comment => {}
        }
        parsed.push(Parsed {
            text: raw,
            kind,
            label,
            source: line_source,
            block,
            debug: section_debug,
        });
    }

    let is_main = |file: u32| files.get(&file).is_some_and(|f| f == source);

    // Labels something refers to: from instructions and data outside the debug sections, and
    // every `.globl`/`.weak` name (a function others may call).
    let mut used: HashSet<&str> = HashSet::new();
    for p in &parsed {
        match p.kind {
            Kind::Instruction | Kind::Data if !p.debug => used.extend(identifiers(p.text)),
            Kind::Directive => {
                let (name, args) = split_directive(p.text.trim());
                if matches!(name, ".globl" | ".global" | ".weak") {
                    used.extend(identifiers(args));
                }
            }
            _ => {}
        }
    }

    // Blocks (functions) with source lines, none of them from the main file.
    let mut block_has_main = vec![false; block + 1];
    let mut block_has_source = vec![false; block + 1];
    for p in &parsed {
        if let Some((file, _)) = p.source {
            block_has_source[p.block] = true;
            block_has_main[p.block] |= is_main(file);
        }
    }
    let library = |b: usize| block_has_source[b] && !block_has_main[b];

    let mut lines = Vec::new();
    // Whether the last label was kept: data under it is kept with the directives filter on.
    let mut label_kept = false;
    for p in &parsed {
        if filters.library_code && library(p.block) {
            continue;
        }
        if filters.directives && p.debug {
            continue;
        }
        let keep = match p.kind {
            Kind::Blank => !filters.directives,
            Kind::Comment => !filters.comment_only,
            Kind::Label => {
                let kept = !filters.labels || p.label.is_some_and(|l| used.contains(l));
                label_kept = kept;
                kept
            }
            Kind::Directive => !filters.directives,
            Kind::Data => !filters.directives || label_kept,
            Kind::Instruction => true,
        };
        if !keep {
            continue;
        }
        let mut text = p.text.to_owned();
        if filters.demangle {
            text = rewrite_names(&text, &mut |name| demangle(name));
        }
        if filters.trim {
            text = squeeze(&text);
        }
        let source = p.source.and_then(|(file, line)| {
            files.get(&file).map(|file| SourceRef { file: file.clone(), line })
        });
        lines.push(AsmLine { text, source });
    }
    Assembly { lines, truncated }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '_' | '.' | '$')
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$')
}

/// A label definition at the start of a line: `name:` (not indented), and the label.
fn classify(raw: &str) -> (Kind, Option<&str>) {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return (Kind::Blank, None);
    }
    if trimmed.starts_with('#') || trimmed.starts_with("//") || trimmed.starts_with(';') {
        return (Kind::Comment, None);
    }
    if !raw.starts_with(char::is_whitespace)
        && raw.starts_with(is_ident_start)
        && let Some(end) = raw.find(|c: char| !is_ident(c))
        && raw[end..].starts_with(':')
    {
        return (Kind::Label, Some(&raw[..end]));
    }
    if trimmed.starts_with('.') {
        let (name, _) = split_directive(trimmed);
        if DATA.contains(&name) {
            return (Kind::Data, None);
        }
        return (Kind::Directive, None);
    }
    (Kind::Instruction, None)
}

fn split_directive(trimmed: &str) -> (&str, &str) {
    match trimmed.find(char::is_whitespace) {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    }
}

/// `.file 1 "main.c"` or `.file 0 "/input" "main.c"`: the number and the path.
fn file_directive(args: &str) -> Option<(u32, String)> {
    let args = args.trim();
    let (number, rest) = args.split_once(char::is_whitespace)?;
    let number: u32 = number.parse().ok()?;
    let strings: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
    let path = match strings.as_slice() {
        [name] => (*name).to_owned(),
        [_, name, ..] if name.starts_with('/') => (*name).to_owned(),
        [dir, name, ..] => format!("{}/{name}", dir.trim_end_matches('/')),
        [] => return None,
    };
    Some((number, path))
}

/// The identifiers of a line outside strings and comments (`#`).
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    let code = strip_comment(text);
    let mut out = Vec::new();
    let mut start = None;
    let mut in_string = false;
    for (i, c) in code.char_indices() {
        if c == '"' {
            in_string = !in_string;
        }
        if in_string {
            start = None;
            continue;
        }
        match start {
            None if is_ident_start(c) => start = Some(i),
            Some(s) if !is_ident(c) => {
                out.push(&code[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start
        && !in_string
    {
        out.push(&code[s..]);
    }
    out.into_iter()
}

fn strip_comment(text: &str) -> &str {
    let mut in_string = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &text[..i],
            _ => {}
        }
    }
    text
}

/// At most this many names in [`demangled_names`]'s map.
pub const MAX_NAMES: usize = 20_000;

/// Each `_Z...` name in `text` that demangles, with its readable form: what a run's result
/// carries for the browser (bounded as [`parse`] is, and to [`MAX_NAMES`] names).
#[cfg(feature = "demangle")]
pub fn demangled_names(text: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for raw in text.lines().take(MAX_LINES) {
        let line = cut(raw, MAX_LINE_BYTES);
        rewrite_names(line, &mut |name| {
            if names.len() < MAX_NAMES
                && !names.contains_key(name)
                && let Some(plain) = demangle(name)
            {
                names.insert(name.to_owned(), plain);
            }
            None
        });
    }
    names
}

/// The line with each `_Z...` name (one that starts an identifier) replaced by what `rename`
/// gives for it; names it gives nothing for stay.
fn rewrite_names(text: &str, rename: &mut dyn FnMut(&str) -> Option<String>) -> String {
    if !text.contains("_Z") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("_Z") {
        let boundary = rest[..at].chars().next_back().is_none_or(|c| !is_ident(c) || c == '.');
        let end = rest[at..].find(|c: char| !is_ident(c)).map_or(rest.len(), |e| at + e);
        let name = &rest[at..end];
        out.push_str(&rest[..at]);
        match boundary.then(|| rename(name)).flatten() {
            Some(plain) => out.push_str(&plain),
            None => out.push_str(name),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A C++ name (Itanium ABI, as gcc and clang write it) in its readable form.
#[cfg(feature = "demangle")]
pub fn demangle(name: &str) -> Option<String> {
    // Local symbol suffixes (`.constprop.0`, `.cold`) are not part of the mangled name.
    let (mangled, suffix) = match name.find('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    let symbol = cpp_demangle::Symbol::new(mangled).ok()?;
    let plain = symbol.demangle().ok()?;
    Some(format!("{plain}{suffix}"))
}

/// Leading white space becomes two spaces, other runs of it one space (not inside strings).
fn squeeze(text: &str) -> String {
    let body = text.trim();
    if body.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(text.len());
    if text.starts_with(char::is_whitespace) {
        out.push_str("  ");
    }
    let mut in_string = false;
    let mut space = false;
    for c in body.chars() {
        if c == '"' {
            in_string = !in_string;
        }
        if !in_string && c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "\t.file\t\"main.c\"
\t.text
.Ltext0:
\t.file 0 \"/input\" \"main.c\"
\t.globl\tf
\t.type\tf, @function
f:
.LFB0:
\t.file 1 \"main.c\"
\t.loc 1 2 1
\t.cfi_startproc
\tmovl\t$1, %eax   # a comment
# only a comment
.L3:
\t.loc 1 3 5
\tjmp\t.L3
\tleaq\t.LC0(%rip), %rdi
\tcall\t_Z3addii@PLT
\tret
\t.cfi_endproc
\t.section\t.rodata
.LC0:
\t.string\t\"hi  there\"
\t.section\t.debug_info,\"\",@progbits
.Ldebug_info0:
\t.long\t.LFB0
";

    fn texts(a: &Assembly) -> Vec<&str> {
        a.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn the_default_filters_keep_code_used_labels_and_data() {
        let a = parse(SMALL, "main.c", "/input", &Filters::default());
        assert_eq!(
            texts(&a),
            [
                "f:",
                "\tmovl\t$1, %eax   # a comment",
                ".L3:",
                "\tjmp\t.L3",
                "\tleaq\t.LC0(%rip), %rdi",
                "\tcall\tadd(int, int)@PLT",
                "\tret",
                ".LC0:",
                "\t.string\t\"hi  there\"",
            ]
        );
        let src = |i: usize| a.lines[i].source.as_ref().map(|s| (s.file.as_str(), s.line));
        assert_eq!(src(0), None, "labels have no source");
        assert_eq!(src(1), Some(("main.c", 2)));
        assert_eq!(src(3), Some(("main.c", 3)));
        assert_eq!(src(8), None);
        assert_eq!(a.lines_for("main.c", 3), [4, 5, 6, 7]);
    }

    #[test]
    fn no_filters_is_the_input_unchanged() {
        let a = parse(SMALL, "main.c", "/input", &Filters::NONE);
        assert_eq!(texts(&a), SMALL.lines().collect::<Vec<_>>());
    }

    #[test]
    fn trim_squeezes_white_space_but_not_strings() {
        let filters = Filters { trim: true, ..Filters::default() };
        let a = parse(SMALL, "main.c", "/input", &filters);
        assert!(texts(&a).contains(&"  movl $1, %eax # a comment"), "{:?}", texts(&a));
        assert!(texts(&a).contains(&"  .string \"hi  there\""));
    }

    #[test]
    fn demangling_keeps_suffixes_and_leaves_other_names() {
        assert_eq!(demangle("_Z3addii").as_deref(), Some("add(int, int)"));
        assert_eq!(demangle("_Z3addii.constprop.0").as_deref(), Some("add(int, int).constprop.0"));
        assert_eq!(demangle("main"), None);
        let line = |text| rewrite_names(text, &mut |name| demangle(name));
        assert_eq!(line("\tcall\tfoo_Z3addii"), "\tcall\tfoo_Z3addii");
        assert_eq!(line("\tcall\t_Z3addii"), "\tcall\tadd(int, int)");
    }

    #[test]
    fn the_names_map_demangles_like_parse() {
        let text = "\tcall\t_Z3addii\n\tcall\t_Z3addii.cold\n\tcall\tfoo_Z3x\n\tcall\t_Znope\n";
        let names = demangled_names(text);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                ("_Z3addii".to_owned(), "add(int, int)".to_owned()),
                ("_Z3addii.cold".to_owned(), "add(int, int).cold".to_owned()),
            ]
        );
        // The browser's way: the same lines through a lookup in that map.
        let map = demangled_names(text);
        let looked_up =
            parse_with(text, "main.c", "/input", &Filters::default(), &|n| map.get(n).cloned());
        assert_eq!(looked_up, parse(text, "main.c", "/input", &Filters::default()));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let long = format!("{}\n", "x".repeat(MAX_LINE_BYTES * 2));
        let a = parse(&long, "main.c", "/input", &Filters::NONE);
        assert_eq!(a.lines[0].text.len(), MAX_LINE_BYTES);
        let many = "nop\n".repeat(MAX_LINES + 5);
        let a = parse(&many, "main.c", "/input", &Filters::default());
        assert!(a.truncated);
        assert_eq!(a.lines.len(), MAX_LINES);
    }
}
