use leptos::prelude::*;

use super::advanced_panel::AdvancedPanel;
use super::asm_pane::AsmPane;
use super::code_editor::CodeEditor;
use super::command_preview::CommandPreview;
use super::compare_output::CompareOutput;
use super::compare_setups::CompareSetups;
use super::file_tabs::FileTabs;
use super::header::Header;
use super::options_form::OptionsForm;
use super::output_panel::OutputPanel;
use super::run_bar::RunBar;
use super::shortcuts_dialog::ShortcutsDialog;
use crate::browser;
use crate::links::Links;
use crate::store::Store;

/// The whole page: a header, the input files on the left, options, run and output on the right
/// (stacked on a narrow screen).
#[component]
pub fn App() -> impl IntoView {
    let store = Store::new();
    provide_context(store);
    Links::provide();
    store.start();

    // Ctrl/Cmd+Enter runs from anywhere (the editor handles its own and stops the event); `?`
    // outside text fields lists the shortcuts.
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.default_prevented() {
            return;
        }
        if (ev.ctrl_key() || ev.meta_key()) && ev.key() == "Enter" {
            ev.prevent_default();
            store.run();
        } else if ev.key() == "?" && !ev.ctrl_key() && !ev.meta_key() && !ev.alt_key() {
            let typing = ev.target().is_some_and(|t| browser::is_text_field(&t));
            if !typing {
                ev.prevent_default();
                store.shortcuts_open.set(true);
            }
        }
    });

    if store.embed {
        return view! { <EmbedView /> }.into_any();
    }
    view! {
        <div class="app">
            <Header />
            <Notice />
            <main class="workspace">
                <section class="pane input-pane" aria-label="Input files">
                    <FileTabs />
                    <div class="source-split">
                        <CodeEditor />
                        <AsmPane />
                    </div>
                </section>
                <section class="pane run-pane" aria-label="Options and output">
                    {move || {
                        if store.comparing.get() {
                            view! {
                                <CompareSetups />
                                <RunBar />
                                <CompareOutput />
                            }
                                .into_any()
                        } else {
                            view! {
                                <OptionsForm side=store.a label="Options" />
                                <AdvancedPanel side=store.a />
                                <CommandPreview side=store.a />
                                <RunBar />
                                <OutputPanel />
                            }
                                .into_any()
                        }
                    }}
                </section>
            </main>
            <ShortcutsDialog />
        </div>
    }
    .into_any()
}

/// The compact view for an `<iframe>` (`/embed/ID`, `/embed/l/ID`): the files, Run and the
/// output, with a link that opens the same state in the full app.
#[component]
fn EmbedView() -> impl IntoView {
    let store = crate::store::use_store();
    let name = move || store.a.meta.get().map(|m| m.name.clone()).unwrap_or_default();
    view! {
        <div class="app embed">
            <header class="embed-bar">
                <strong>{name}</strong>
                <button
                    type="button"
                    class="link-button"
                    data-testid="open-in-pe"
                    title="Open this playground, as it is now, in Program Explorer"
                    on:click=move |_| store.open_in_app()
                >
                    "Open in Program Explorer ↗"
                </button>
            </header>
            <Notice />
            <main class="workspace">
                <section class="pane input-pane" aria-label="Input files">
                    <FileTabs />
                    <CodeEditor />
                </section>
                <section class="pane run-pane" aria-label="Run and output">
                    <RunBar />
                    <OutputPanel />
                </section>
            </main>
            <ShortcutsDialog />
        </div>
    }
}

/// A problem loading the catalog or a link, shown above everything.
#[component]
fn Notice() -> impl IntoView {
    let store = crate::store::use_store();
    move || {
        store.notice.get().map(|notice| {
            view! {
                <p class="notice" role="alert" data-testid="notice">
                    {notice}
                </p>
            }
        })
    }
}
