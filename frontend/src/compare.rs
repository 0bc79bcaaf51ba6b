//! What the compare view puts side by side: standard output, standard error, and each output
//! file the two runs both made, as text (a hex dump where a file is not text). Plain data, no
//! browser APIs, so it is tested on the host.

use crate::api::RunOutput;
use crate::format;

/// One pair of outputs with the same name.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// `stdout`, `stderr`, or the output file's path.
    pub name: String,
    pub a: String,
    pub b: String,
    /// The editor language of the pair (from the file name).
    pub language: &'static str,
}

impl Pair {
    pub fn same(&self) -> bool {
        self.a == self.b
    }
}

/// The text shown for some bytes: UTF-8 as it is, anything with a NUL or invalid UTF-8 as a
/// hex dump.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => s.to_owned(),
        _ => format::hex_dump(bytes),
    }
}

/// The pairs to diff, stdout and stderr first, then the output files both runs made (by
/// path); and the files only one of them made.
pub fn pairs(a: &RunOutput, b: &RunOutput) -> (Vec<Pair>, Vec<String>) {
    let mut pairs = vec![
        Pair {
            name: "stdout".into(),
            a: text(&a.stdout),
            b: text(&b.stdout),
            language: "plaintext",
        },
        Pair {
            name: "stderr".into(),
            a: text(&a.stderr),
            b: text(&b.stderr),
            language: "plaintext",
        },
    ];
    let mut alone = Vec::new();
    for (path, data) in &a.files {
        match b.files.iter().find(|(p, _)| p == path) {
            Some((_, other)) => pairs.push(Pair {
                name: path.clone(),
                a: text(data),
                b: text(other),
                language: format::language_for(path),
            }),
            None => alone.push(format!("{path} (A only)")),
        }
    }
    for (path, _) in &b.files {
        if !a.files.iter().any(|(p, _)| p == path) {
            alone.push(format!("{path} (B only)"));
        }
    }
    (pairs, alone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str, files: &[(&str, &[u8])]) -> RunOutput {
        let result = serde_json::from_value(serde_json::json!({
            "status": "exited", "exit_code": 0, "argv": ["x"],
            "image": {"id": "x", "digest": "sha256:00"}, "backend": {"kind": "microvm"},
            "cached": false, "timings_ms": {"queue": 0, "boot": 1, "run": 2, "total": 3},
            "usage": {"user_ms": 0, "sys_ms": 0, "max_rss_kib": 0},
            "truncated": {"stdout": false, "stderr": false, "files": false}
        }))
        .unwrap();
        RunOutput {
            result,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            files: files.iter().map(|(p, d)| (p.to_string(), d.to_vec())).collect(),
            tree: None,
        }
    }

    #[test]
    fn streams_and_files_of_the_same_name_pair_up() {
        let a = output("1\n", &[("out.s", b"mov"), ("a.bin", b"\0\x01"), ("only-a", b"")]);
        let b = output("2\n", &[("out.s", b"mov"), ("a.bin", b"\0\x02"), ("only-b", b"")]);
        let (pairs, alone) = pairs(&a, &b);
        let names: Vec<_> = pairs.iter().map(|p| (p.name.as_str(), p.same())).collect();
        assert_eq!(names, [("stdout", false), ("stderr", true), ("out.s", true), ("a.bin", false)]);
        assert!(pairs[3].a.starts_with("00000000"), "binary files are compared as hex dumps");
        assert_eq!(alone, ["only-a (A only)", "only-b (B only)"]);
    }
}
