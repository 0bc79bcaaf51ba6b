//! The page, one component per file. Each reads and changes the [`crate::store::Store`] in
//! context; none talks HTTP (that is [`crate::api`], reached through the store's actions).

pub mod advanced_panel;
pub mod app;
pub mod asm_pane;
pub mod code_editor;
pub mod command_preview;
pub mod compare_button;
pub mod compare_output;
pub mod compare_setups;
pub mod container_picker;
pub mod diagnostics;
pub mod diff_view;
pub mod editor_links;
pub mod examples_menu;
pub mod file_actions;
pub mod file_tab;
pub mod file_tabs;
pub mod header;
pub mod live_output;
pub mod option_field;
pub mod options_form;
pub mod output_files;
pub mod output_panel;
pub mod output_viewer;
pub mod run_bar;
pub mod share_button;
pub mod shortcuts_dialog;
pub mod status_line;
pub mod streams;
pub mod theme_toggle;
