//! The diagnostics parsers on real output: each case in `tests/fixtures/diagnostics/` holds a
//! tool's input files and what it printed in its microVM (`capture.sh` made them), and is read
//! with the `[diagnostics]` table of that tool's real metadata file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shared::diagnostics::{Diagnostic, DiagnosticsSpec, Severity, Stream, parse};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diagnostics")
}

/// The `[diagnostics]` table of `container-meta/<id>.toml`, checked.
fn spec(container: &str) -> DiagnosticsSpec {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../container-meta/{container}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    #[derive(serde::Deserialize)]
    struct Only {
        diagnostics: Option<DiagnosticsSpec>,
    }
    let only: Only = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = only.diagnostics.unwrap_or_else(|| panic!("{container} has no [diagnostics]"));
    spec.validate().unwrap();
    spec
}

/// The diagnostics of a fixture case, parsed as its container's metadata says.
fn case(name: &str) -> Vec<Diagnostic> {
    let dir = fixtures().join(name);
    let cmd = std::fs::read_to_string(dir.join("cmd")).unwrap();
    let container = cmd.split_whitespace().next().unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !["cmd", "stdout", "stderr", "exit"].contains(&name.as_str()) {
            sources.insert(name.clone(), read(&name));
        }
    }
    let lookup = |path: &str| sources.get(path).map(String::as_str);
    parse(&spec(container), "/input", &read("stdout"), &read("stderr"), &lookup).unwrap()
}

/// (path, line, column, severity, start of the message) of each diagnostic.
fn brief(list: &[Diagnostic]) -> Vec<(String, u32, u32, Severity, String)> {
    list.iter()
        .map(|d| {
            let short: String = d.message.chars().take(24).collect();
            (d.path.clone(), d.line, d.column, d.severity, short)
        })
        .collect()
}

fn expect(list: &[Diagnostic], want: &[(&str, u32, u32, Severity, &str)]) {
    let got = brief(list);
    let want: Vec<_> =
        want.iter().map(|(p, l, c, s, m)| (p.to_string(), *l, *c, *s, m.to_string())).collect();
    assert_eq!(got, want, "all: {list:#?}");
}

use Severity::{Error, Note, Warning};

#[test]
fn gcc_errors_warnings_and_their_ranges() {
    let d = case("gcc-errors");
    expect(
        &d,
        &[
            ("main.c", 3, 5, Error, "expected ',' or ';' befo"),
            ("main.c", 2, 9, Warning, "unused variable 'x' [-Wu"),
        ],
    );
    // `^~~~~~` under `return`: six columns.
    assert_eq!((d[0].end_line, d[0].end_column), (Some(3), Some(11)));
    assert_eq!((d[1].end_line, d[1].end_column), (Some(2), Some(10)));
    assert!(d.iter().all(|d| d.stream == Stream::Stderr));
}

#[test]
fn gcc_notes_point_into_headers_and_fatal_errors_are_errors() {
    expect(
        &case("gcc-notes"),
        &[
            ("main.c", 4, 5, Error, "conflicting types for 't"),
            ("util.h", 2, 6, Note, "previous declaration of "),
            ("main.c", 11, 20, Error, "too many arguments to fu"),
            ("main.c", 4, 5, Note, "declared here"),
            ("main.c", 12, 23, Warning, "implicit declaration of "),
            ("main.c", 6, 12, Warning, "'unused_fn' defined but "),
        ],
    );
    expect(&case("gcc-fatal"), &[("main.c", 1, 10, Error, "nope.h: No such file or ")]);
    // The linker names no line: nothing to mark.
    expect(&case("gcc-link"), &[]);
}

#[test]
fn gxx_template_errors_and_required_from_here() {
    expect(
        &case("g++-template"),
        &[
            ("main.cpp", 13, 21, Error, "conversion from 'std::ve"),
            ("main.cpp", 12, 17, Note, "required from here"),
            ("main.cpp", 5, 28, Error, "no match for 'operator+'"),
        ],
    );
}

#[test]
fn python_traceback_marks_the_innermost_input_frame() {
    let d = case("python-traceback");
    expect(
        &d,
        &[
            ("helper.py", 2, 12, Error, "ZeroDivisionError: divis"),
            ("main.py", 4, 0, Note, "traceback (in main): Zer"),
            ("main.py", 6, 0, Note, "traceback (in <module>):"),
        ],
    );
    // 3.11's `~~^~~` under `a / b`, put back at the line's own indentation.
    assert_eq!(d[0].end_column, Some(17));
}

#[test]
fn python_syntax_errors_and_warnings() {
    let d = case("python-syntax");
    expect(&d, &[("main.py", 2, 5, Error, "SyntaxError: '(' was nev")]);
    expect(&case("python-indent"), &[("main.py", 2, 1, Error, "IndentationError: expect")]);
    expect(&case("python-warning"), &[("main.py", 2, 0, Warning, "DeprecationWarning: old ")]);
}

#[test]
fn node_uncaught_and_syntax_errors() {
    expect(
        &case("node-throw"),
        &[
            ("main.js", 2, 3, Error, "ReferenceError: undefine"),
            ("main.js", 5, 1, Note, "stack trace: ReferenceEr"),
        ],
    );
    expect(&case("node-syntax"), &[("main.js", 2, 9, Error, "SyntaxError: Unexpected ")]);
    expect(
        &case("node-require"),
        &[
            ("lib.js", 2, 8, Error, "TypeError: Cannot read p"),
            ("main.js", 2, 5, Note, "stack trace: TypeError: "),
        ],
    );
}

#[test]
fn lua_errors_and_tracebacks() {
    expect(
        &case("lua-runtime"),
        &[
            ("main.lua", 2, 0, Error, "attempt to index a nil v"),
            ("main.lua", 5, 0, Note, "traceback (in main chunk"),
        ],
    );
    expect(&case("lua-syntax"), &[("main.lua", 2, 0, Error, "unexpected symbol near '")]);
    expect(&case("lua-error"), &[("main.lua", 1, 0, Error, "custom failure")]);
}

#[test]
fn shellcheck_gcc_format_on_stdout() {
    let d = case("shellcheck-gcc");
    assert_eq!(d.len(), 8, "{d:#?}");
    assert_eq!(
        brief(&d[2..3]),
        [("script.sh".into(), 6, 6, Warning, "x is referenced but not ".into())]
    );
    assert!(d.iter().all(|d| d.stream == Stream::Stdout));
    assert_eq!(d.iter().filter(|d| d.severity == Note).count(), 5);
}

#[test]
fn regex_formats_of_jq_sqlite_graphviz_pandoc() {
    expect(&case("jq-runtime"), &[("input.json", 1, 0, Error, "Cannot index number with")]);
    expect(&case("jq-input"), &[("input.json", 4, 1, Error, "parse error: Objects mus")]);
    expect(&case("jq-filter"), &[]);
    expect(&case("sqlite-syntax"), &[("query.sql", 3, 0, Error, "near \"SELEC\": syntax err")]);
    expect(&case("sqlite-table"), &[("query.sql", 3, 0, Error, "no such table: nope")]);
    expect(&case("graphviz-syntax"), &[("graph.dot", 3, 0, Error, "syntax error in line 3 n")]);
    expect(&case("graphviz-warning"), &[]);
    expect(&case("pandoc-warnings"), &[("input.md", 6, 1, Warning, "Duplicate link reference")]);
}

#[test]
fn compilers_of_the_larger_catalog() {
    expect(
        &case("clang-errors"),
        &[
            ("main.c", 4, 20, Error, "use of undeclared identi"),
            ("main.c", 5, 13, Error, "expected ';' after retur"),
        ],
    );
    expect(&case("go-errors"), &[("main.go", 7, 14, Error, "undeclared name: y")]);
    expect(&case("java-errors"), &[("Main.java", 4, 0, Error, "';' expected")]);
    expect(&case("nasm-errors"), &[("main.asm", 5, 0, Error, "parser: instruction expe")]);
    expect(
        &case("typescript-errors"),
        &[
            ("main.ts", 1, 7, Error, "TS2322: Type 'string' is"),
            ("main.ts", 2, 34, Error, "TS2551: Property 'lenght"),
        ],
    );
}

#[test]
fn interpreters_and_linters_of_the_larger_catalog() {
    expect(
        &case("bash-errors"),
        &[
            ("main.sh", 2, 0, Error, "nosuchcommand: command n"),
            ("main.sh", 3, 0, Error, "cd: /nonexistent: No suc"),
            ("main.sh", 4, 0, Error, "1 / 0: division by 0 (er"),
        ],
    );
    // The error's own line only (its `from` lines are not read).
    expect(&case("ruby-errors"), &[("main.rb", 2, 0, Error, "`greet': undefined local")]);
    expect(&case("perl-errors"), &[("main.pl", 4, 0, Error, "Global symbol \"$y\" requi")]);
    expect(&case("php-errors"), &[("main.php", 3, 0, Error, "syntax error, unexpected")]);
    // pylint counts columns from 0; E is an error, W a warning, C (convention) a note.
    expect(
        &case("pylint-messages"),
        &[
            ("main.py", 1, 1, Note, "C0114: Missing module do"),
            ("main.py", 3, 1, Note, "C0116: Missing function "),
            ("main.py", 3, 1, Note, "C0103: Function name \"f\""),
            ("main.py", 3, 7, Note, "C0103: Argument name \"x\""),
            ("main.py", 4, 12, Error, "E0602: Undefined variabl"),
            ("main.py", 1, 1, Warning, "W0611: Unused import os "),
        ],
    );
}
