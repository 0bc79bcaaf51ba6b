use leptos::prelude::*;

use super::advanced_panel::AdvancedPanel;
use super::command_preview::CommandPreview;
use super::options_form::OptionsForm;
use crate::store::{Side, use_store};

/// The compare view's two setups side by side (stacked on a narrow screen): A takes its
/// container from the header's picker, B has a container menu of its own.
#[component]
pub fn CompareSetups() -> impl IntoView {
    let store = use_store();
    view! {
        <div class="compare-setups">
            <section class="setup" aria-labelledby="setup-a-title" data-testid="setup-a">
                <h2 class="setup-title" id="setup-a-title">
                    <span class="side-mark">"A"</span>
                    <SideName side=store.a />
                </h2>
                <OptionsForm side=store.a label="Options of A" />
                <AdvancedPanel side=store.a />
                <CommandPreview side=store.a />
            </section>
            <section class="setup" aria-labelledby="setup-b-title" data-testid="setup-b">
                <h2 class="setup-title" id="setup-b-title">
                    <span class="side-mark">"B"</span>
                    <SideName side=store.b />
                </h2>
                <ContainerMenu />
                <OptionsForm side=store.b label="Options of B" />
                <AdvancedPanel side=store.b />
                <CommandPreview side=store.b />
            </section>
        </div>
    }
}

/// The name of a side's container.
#[component]
pub fn SideName(side: Side) -> impl IntoView {
    move || side.meta.get().map(|m| m.name.clone()).unwrap_or_default()
}

/// B's container: every container of the catalog.
#[component]
fn ContainerMenu() -> impl IntoView {
    let store = use_store();
    view! {
        <div class="field">
            <label for="container-b">"Container of B"</label>
            <select
                id="container-b"
                data-testid="container-b"
                on:change=move |ev| store.switch_container_b(&event_target_value(&ev))
            >
                {move || {
                    let current = store.b.container.get();
                    store
                        .catalog
                        .get()
                        .iter()
                        .map(|c| {
                            let selected = c.meta.id == current;
                            view! {
                                <option value=c.meta.id.clone() prop:selected=selected>
                                    {c.meta.name.clone()}
                                </option>
                            }
                        })
                        .collect_view()
                }}
            </select>
        </div>
    }
}
