//! What ties the source editor to the views of a run's output: the diagnostics list asks it to
//! show a spot, and the assembly pane and the source editor highlight each other's lines. One
//! [`Links`] in context, beside the [`crate::store::Store`].
//!
//! Both panes colour each source line that has instructions with one of [`COLOURS`] colours
//! (the same colour on both sides), and the line pointed at (hovered, else under the cursor) in
//! one pane is highlighted in the other, as Compiler Explorer does.

use leptos::prelude::*;
use shared::asm::Filters;

/// How many colours the source lines cycle through (`.asm-c0` to `.asm-c11` in style.css).
pub const COLOURS: u32 = 12;

/// A spot to show in the source editor: a file, a line and a column (0: the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub path: String,
    pub line: u32,
    pub column: u32,
}

/// Line decorations the assembly pane wants on the source editor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMarks {
    /// The file they are for (the assembly's source).
    pub path: String,
    /// Each source line with instructions, and its colour number.
    pub colours: Vec<(u32, u32)>,
    /// The source line of the assembly line pointed at.
    pub highlight: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct Links {
    /// Set by a click in the diagnostics list; the source editor shows it and clears it.
    pub reveal: RwSignal<Option<Spot>>,
    /// The line pointed at in the source editor, with the file it is in.
    pub source_focus: RwSignal<Option<(String, u32)>>,
    pub source_marks: RwSignal<SourceMarks>,
    /// The assembly pane's filter toggles.
    pub asm_filters: RwSignal<Filters>,
}

impl Links {
    /// Creates the links and puts them in context.
    pub fn provide() -> Links {
        let links = Links {
            reveal: RwSignal::new(None),
            source_focus: RwSignal::new(None),
            source_marks: RwSignal::new(SourceMarks::default()),
            asm_filters: RwSignal::new(Filters::default()),
        };
        provide_context(links);
        links
    }
}

pub fn use_links() -> Links {
    expect_context::<Links>()
}

/// The CSS class of a source line's colour.
pub fn colour_class(line: u32) -> String {
    format!("asm-c{}", line % COLOURS)
}
