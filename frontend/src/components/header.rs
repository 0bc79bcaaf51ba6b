use leptos::prelude::*;

use super::compare_button::CompareButton;
use super::container_picker::ContainerPicker;
use super::examples_menu::ExamplesMenu;
use super::share_button::ShareButton;
use super::shortcuts_dialog::ShortcutsButton;
use super::theme_toggle::ThemeToggle;

/// The top bar: name, container picker, examples, compare, share, theme, the shortcut list.
#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="topbar">
            <h1 class="brand">"Program Explorer"</h1>
            <ContainerPicker />
            <ExamplesMenu />
            <CompareButton />
            <ShareButton />
            <ThemeToggle />
            <ShortcutsButton />
        </header>
    }
}
