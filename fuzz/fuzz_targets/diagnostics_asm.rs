//! The output readers: the diagnostics parsers (every built-in format, and a regex) and the
//! assembly filter, on any text a program could print. Nothing may panic; every diagnostic
//! has a line, a non-empty path and a bounded message, and their count is bounded; the assembly
//! filter keeps at most as many lines as it read, and with no filters it changes nothing.
//!
//! Input layout: 1 control byte, then the text. `c & 7` picks the reader (0-3: the built-in
//! formats, 4: a regex with every named group, 5-7: the assembly with filter bits `c >> 3`);
//! the text is stdout before the first NUL byte and stderr after it (the whole text is the
//! assembly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::asm::{self, Filters};
use shared::diagnostics::{
    self, DiagnosticsSpec, Format, MAX_DIAGNOSTICS, MAX_MESSAGE_BYTES, Patterns,
};

const REGEX: &str = r"^(?P<path>[^:\s]+):(?P<line>\d+):(?:(?P<column>\d+):)?(?:(?P<end_line>\d+)\.(?P<end_column>\d+):)? (?P<severity>\w+): (?P<message>.*)$";

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match control & 7 {
        which @ 0..=4 => {
            let format = [Format::Gcc, Format::Python, Format::Node, Format::Lua].get(which as usize);
            let spec = DiagnosticsSpec {
                format: format.copied(),
                regex: format.is_none().then(|| Patterns::One(REGEX.into())),
                stream: None,
                path: None,
                severity: None,
                zero_based_columns: which == 4 && rest.len() % 2 == 0,
            };
            let (stdout, stderr) = text.split_once('\0').unwrap_or((&text, ""));
            // Sources for Python's carets: the text itself under every name.
            let sources = |_: &str| Some(&*text);
            let list = diagnostics::parse(&spec, "/input", stdout, stderr, &sources)
                .expect("the spec is valid");
            assert!(list.len() <= MAX_DIAGNOSTICS);
            for d in &list {
                assert!(d.line > 0, "{d:?}");
                assert!(!d.path.is_empty(), "{d:?}");
                assert!(d.message.len() <= MAX_MESSAGE_BYTES, "{d:?}");
            }
        }
        _ => {
            let bits = control >> 3;
            let filters = Filters {
                directives: bits & 1 != 0,
                labels: bits & 2 != 0,
                comment_only: bits & 4 != 0,
                library_code: bits & 8 != 0,
                demangle: bits & 16 != 0,
                trim: control & 1 != 0,
            };
            let out = asm::parse(&text, "main.c", "/input", &filters);
            assert!(out.lines.len() <= text.lines().count().max(1));
            let raw = asm::parse(&text, "main.c", "/input", &Filters::NONE);
            if !raw.truncated {
                let same: Vec<&str> = raw.lines.iter().map(|l| l.text.as_str()).collect();
                let want: Vec<&str> =
                    text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
                if want.iter().all(|l| l.len() <= asm::MAX_LINE_BYTES) {
                    assert_eq!(same, want, "no filters change nothing");
                }
            }
        }
    }
});
