//! The container metadata parser and the option renderer: any TOML text a maintainer (or an
//! attacker with a pull request) could write. Parsing, validating and rendering must never
//! panic; a file that validates must render its defaults and every example, and a rendered
//! argv never holds a value spliced into a literal element.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use shared::meta::{ContainerMeta, OptionGroup};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A group file and a container file, split on the first NUL if there is one.
    let (group_text, meta_text) = text.split_once('\0').unwrap_or(("", text));
    let mut groups = BTreeMap::new();
    if let Ok(group) = toml::from_str::<OptionGroup>(group_text) {
        groups.insert("g".to_owned(), group);
    }
    let Ok(meta) = toml::from_str::<ContainerMeta>(meta_text) else { return };
    let Ok(meta) = meta.with_groups(&groups) else { return };
    if meta.validate().is_err() {
        // Rendering an invalid file may fail, but must not panic.
        let _ = meta.render(&meta.defaults(), &[]);
        return;
    }
    let rendered = meta
        .render(&meta.defaults(), &["extra".to_owned()])
        .expect("valid metadata renders its defaults");
    assert!(rendered.argv.iter().any(|a| a == "extra"), "extra arguments are kept");
    for example in &meta.examples {
        meta.render(&example.options, &example.args).expect("valid metadata renders its examples");
    }
    for file in &meta.files {
        let _ = meta.accepts(&file.path);
        let _ = meta.view_for(&file.path);
    }
});
