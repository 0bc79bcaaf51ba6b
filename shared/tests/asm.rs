//! The assembly filter on real gcc and g++ output (`-g -S`, captured in the microVM; the
//! sources are beside them, compiled as `main.c` / `main.cpp` in /input).

use std::path::Path;

use shared::asm::{Assembly, Filters, parse};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asm").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn show(a: &Assembly) -> String {
    a.lines
        .iter()
        .map(|l| match &l.source {
            Some(s) => format!("{:<40} ; {}:{}\n", l.text, s.file, s.line),
            None => format!("{}\n", l.text),
        })
        .collect()
}

fn source_of<'a>(a: &'a Assembly, text: &str) -> Option<(&'a str, u32)> {
    let line = a
        .lines
        .iter()
        .find(|l| l.text.trim() == text)
        .unwrap_or_else(|| panic!("no {text:?} in\n{}", show(a)));
    line.source.as_ref().map(|s| (s.file.as_str(), s.line))
}

#[test]
fn gcc_o0_maps_each_instruction_to_its_line() {
    let a = parse(&fixture("square-O0.s"), "main.c", "/input", &Filters::default());
    let text = show(&a);
    // Directives, debug sections and unused labels (.LFB0, .Ltext0, .LBB2) are gone; the jump
    // targets, the string constant and both functions stay.
    for gone in [".loc", ".cfi", ".LFB0", ".Ltext0", ".LBB2", ".debug", ".uleb128"] {
        assert!(!text.contains(gone), "{gone} is left:\n{text}");
    }
    for kept in ["square:", "main:", ".L4:", ".L5:", ".LC0:", ".string\t\"sum = %d\\n\""] {
        assert!(text.contains(kept), "{kept} is missing:\n{text}");
    }
    assert_eq!(a.lines.len(), 38, "{text}");
    assert_eq!(source_of(&a, "imull\t%eax, %eax"), Some(("main.c", 7)));
    assert_eq!(source_of(&a, "call\tsquare"), Some(("main.c", 13)));
    assert_eq!(source_of(&a, "call\tprintf@PLT"), Some(("main.c", 14)));
    assert_eq!(source_of(&a, "main:"), None);
    // The loop's condition (line 12) compiles to instructions in three places.
    assert_eq!(a.lines_for("main.c", 12).len(), 5);
}

#[test]
fn no_filters_leave_every_line_and_trim_squeezes() {
    let raw = fixture("square-O0.s");
    let a = parse(&raw, "main.c", "/input", &Filters::NONE);
    assert_eq!(a.lines.len(), raw.lines().count());
    let trimmed = parse(&raw, "main.c", "/input", &Filters { trim: true, ..Filters::default() });
    assert!(trimmed.lines.iter().any(|l| l.text == "  imull %eax, %eax"), "{}", show(&trimmed));
    let labels = parse(&raw, "main.c", "/input", &Filters { labels: false, ..Filters::default() });
    assert!(labels.lines.iter().any(|l| l.text == ".LFB0:"));
}

#[test]
fn gcc_o2_intel_syntax() {
    let a = parse(&fixture("square-O2-intel.s"), "main.c", "/input", &Filters::default());
    assert_eq!(source_of(&a, "imul\tedi, edi"), Some(("main.c", 7)));
    // square() inlined into main's loop, folded to one add: it points back at line 6.
    assert_eq!(source_of(&a, "add\tDWORD PTR calls[rip], 10"), Some(("main.c", 6)));
    assert!(!show(&a).contains(".intel_syntax"));
}

#[test]
fn gxx_library_code_and_demangling() {
    let raw = fixture("vec-O1.s");
    let a = parse(&raw, "main.cpp", "/input", &Filters::default());
    let text = show(&a);
    assert!(
        text.contains("total(std::vector<shapes::Box, std::allocator<shapes::Box> > const&):"),
        "{text}"
    );
    assert!(text.contains("call\toperator new(unsigned long)@PLT"));
    // The standard library's own functions (emitted as weak template instances) are hidden...
    assert!(!text.contains("_M_realloc_insert<shapes::Box>(__gnu_cxx::__normal_iterator<shapes::Box*, std::vector<shapes::Box, std::allocator<shapes::Box> > >, shapes::Box&&):"), "{text}");
    // ...while the code they inlined into main keeps pointing at their headers.
    assert_eq!(source_of(&a, "movl\t$5, 24(%rsp)"), Some(("main.cpp", 17)));
    assert!(a.lines.iter().any(|l| {
        l.source.as_ref().is_some_and(|s| s.file == "/usr/include/c++/12/bits/stl_vector.h")
    }));
    let all = parse(
        &raw,
        "main.cpp",
        "/input",
        &Filters { library_code: false, demangle: false, ..Filters::default() },
    );
    let all_text = show(&all);
    assert!(all.lines.len() > a.lines.len() + 50, "{} vs {}", all.lines.len(), a.lines.len());
    assert!(all_text.contains("_ZNSt6vectorIN6shapes3BoxESaIS1_EE17_M_realloc_insertIJS1_EEEvN9__gnu_cxx17__normal_iteratorIPS1_S3_EEDpOT_:"), "{all_text}");
}
