use leptos::prelude::*;

use super::container_picker::ContainerPicker;
use super::examples_menu::ExamplesMenu;
use super::share_button::ShareButton;

/// The top bar: name, container picker, examples, share.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="topbar">
            <h1 class="brand">"Program Explorer"</h1>
            <ContainerPicker />
            <ExamplesMenu />
            <ShareButton />
        </header>
    }
}
