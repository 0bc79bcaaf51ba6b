//! Error messages with their causes, in one line.

use std::error::Error;

/// `err` and every cause under it (its [`Error::source`] chain), joined with `": "`: the one
/// way an error is written for a person (log lines, `pe`'s stderr, a job's failure note).
pub fn chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start QEMU")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_written_in_order() {
        let err = Outer(std::io::Error::other("no such file"));
        assert_eq!(chain(&err), "cannot start QEMU: no such file");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
