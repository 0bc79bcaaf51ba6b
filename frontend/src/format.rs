//! Pure functions that turn data into what the page shows: the command line, a run's status in
//! words, hex dumps, sizes, editor languages and output viewers. No browser APIs, so they are
//! tested on the host.

use std::collections::BTreeMap;

use shared::api::v1::{RunResult, RunStatus};
use shared::meta::{ContainerMeta, View};

/// The argv as a person would type it in a POSIX shell: words quoted only where needed.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

/// The user's extra arguments: one per line, blank lines skipped.
pub fn parse_args(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

/// The text of the arguments field for a list of arguments.
pub fn args_text(args: &[String]) -> String {
    args.join("\n")
}

/// Environment variables, one `KEY=VALUE` per line; blank lines are skipped.
pub fn parse_env(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let valid = line.split_once('=').filter(|(key, _)| {
            !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        let Some((key, value)) = valid else {
            return Err(format!(
                "environment line {}: {line:?} is not NAME=VALUE (NAME: letters, digits, _)",
                n + 1
            ));
        };
        env.insert(key.to_owned(), value.to_owned());
    }
    Ok(env)
}

/// The text of the environment field for a map of variables.
pub fn env_text(env: &BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n")
}

/// How a run ended, in plain words.
pub fn status_words(result: &RunResult) -> String {
    match result.status {
        RunStatus::Exited => format!("Exited with code {}", result.exit_code.unwrap_or(0)),
        RunStatus::Signaled => match result.signal {
            Some(n) => format!("Killed by signal {n}{}", signal_name(n)),
            None => "Killed by a signal".into(),
        },
        RunStatus::Timeout => "Timed out after the time limit".into(),
        RunStatus::Oom => "Killed: out of memory".into(),
        RunStatus::OutputLimit => "Output limit reached".into(),
        RunStatus::FailedToStart => format!(
            "Could not start: {}",
            result.message.as_deref().unwrap_or("the program could not be started")
        ),
    }
}

/// Whether the run counts as a success (green) or not (red).
pub fn is_success(result: &RunResult) -> bool {
    result.status == RunStatus::Exited && result.exit_code.unwrap_or(0) == 0
}

fn signal_name(n: i32) -> &'static str {
    match n {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// `the program...` as `The program...`: server messages start in lower case.
pub fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Milliseconds for people: `850 ms`, `2.4 s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 { format!("{ms:.0} ms") } else { format!("{:.1} s", ms / 1000.0) }
}

/// Bytes for people: `512 B`, `4.0 KiB`, `1.5 MiB`.
pub fn bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n < KIB {
        format!("{n} B")
    } else if n < KIB * KIB {
        format!("{:.1} KiB", n / KIB)
    } else {
        format!("{:.1} MiB", n / KIB / KIB)
    }
}

/// How many bytes the hex view shows.
pub const HEX_LIMIT: usize = 4096;

/// A classic hex dump (offset, 16 bytes in hex, the printable ones as text) of the first
/// [`HEX_LIMIT`] bytes.
pub fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in data[..data.len().min(HEX_LIMIT)].chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
            .collect();
        out.push_str(&format!("{:08x}  {:<47}  {text}\n", row * 16, hex.join(" ")));
    }
    if data.len() > HEX_LIMIT {
        out.push_str(&format!("... {} more bytes\n", data.len() - HEX_LIMIT));
    }
    out
}

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

/// The Monaco language for a file name.
pub fn language_for(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == "Makefile" || name == "makefile" {
        return "plaintext";
    }
    match extension(path).as_str() {
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => "cpp",
        "py" => "python",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" => "typescript",
        "lua" => "lua",
        "sh" | "bash" => "shell",
        "json" => "json",
        "md" | "markdown" => "markdown",
        "sql" => "sql",
        "html" | "htm" => "html",
        "css" => "css",
        "yaml" | "yml" => "yaml",
        "xml" | "svg" => "xml",
        "rs" => "rust",
        "go" => "go",
        "java" => "java",
        "rb" => "ruby",
        "s" | "asm" => "mips",
        _ => "plaintext",
    }
}

/// How to show an output file: what the container's metadata says, else by its extension and
/// content.
pub fn view_for(meta: Option<&ContainerMeta>, path: &str, data: &[u8]) -> View {
    if let Some(view) = meta.and_then(|m| m.view_for(path)) {
        return view;
    }
    match extension(path).as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" => View::Image,
        "svg" => View::Svg,
        "html" | "htm" => View::Html,
        "pdf" | "zip" | "gz" | "tar" => View::Download,
        _ if looks_like_text(data) => View::Text,
        _ => View::Hex,
    }
}

fn looks_like_text(data: &[u8]) -> bool {
    !data.contains(&0) && std::str::from_utf8(data).is_ok()
}

/// The media type for a blob URL of an output file shown as an image or downloaded.
pub fn media_type(path: &str) -> &'static str {
    match extension(path).as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "html" | "htm" => "text/html",
        "txt" | "s" | "c" | "h" | "md" => "text/plain;charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A file name not yet in `taken`: `file.c`, `file2.c`, `file3.c`, ...
pub fn unique_name(stem: &str, ext: &str, taken: &[&str]) -> String {
    let dot = if ext.is_empty() { String::new() } else { format!(".{ext}") };
    (1..)
        .map(|n| if n == 1 { format!("{stem}{dot}") } else { format!("{stem}{n}{dot}") })
        .find(|name| !taken.contains(&name.as_str()))
        .unwrap_or_default()
}

/// `text` without its ANSI escape sequences (colours, cursor moves): the result panel shows
/// text, the live terminal shows colours.
pub fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\x1b') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // CSI: parameters and intermediates up to a final byte in @..~.
            Some('[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            // A two-character escape.
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_escapes_are_stripped_for_the_result_panel() {
        assert_eq!(strip_ansi("\x1b[32mgreen\x1b[0m plain"), "green plain");
        assert_eq!(strip_ansi("a\x1b]0;title\x07b\x1b]8;;x\x1b\\c"), "abc");
        assert_eq!(strip_ansi("no escapes"), "no escapes");
        assert_eq!(strip_ansi("cut\x1b["), "cut");
    }

    #[test]
    fn shell_join_quotes_only_what_needs_it() {
        let argv: Vec<String> =
            ["gcc", "-O2", "-std=c17", "a b", "it's", ""].iter().map(|s| s.to_string()).collect();
        assert_eq!(shell_join(&argv), r"gcc -O2 -std=c17 'a b' 'it'\''s' ''");
    }

    #[test]
    fn env_lines_are_checked_and_round_trip() {
        let env = parse_env("A=1\n\nB_2=x=y\n").unwrap();
        assert_eq!(env["B_2"], "x=y");
        assert_eq!(parse_env(&env_text(&env)).unwrap(), env);
        assert!(parse_env("no equals").unwrap_err().contains("line 1"));
        assert!(parse_env("1X=2").is_err());
        assert_eq!(parse_args("-lm\n\n -v\n"), ["-lm", " -v"]);
    }

    #[test]
    fn hex_dump_shows_offsets_and_printable_text() {
        let dump = hex_dump(b"PNG\x00\x01");
        assert_eq!(dump, format!("00000000  {:<47}  PNG..\n", "50 4e 47 00 01"));
        assert!(hex_dump(&vec![0; HEX_LIMIT + 5]).ends_with("... 5 more bytes\n"));
    }

    #[test]
    fn viewers_follow_the_extension_and_content() {
        assert_eq!(view_for(None, "graph.svg", b"<svg/>"), View::Svg);
        assert_eq!(view_for(None, "a.png", b"\x89PNG"), View::Image);
        assert_eq!(view_for(None, "main.s", b"mov"), View::Text);
        assert_eq!(view_for(None, "a.out", b"\x7fELF\x00"), View::Hex);
        assert_eq!(language_for("src/main.C"), "c");
        assert_eq!(unique_name("file", "c", &["file.c", "file2.c"]), "file3.c");
    }
}
