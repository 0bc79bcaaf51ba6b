use std::sync::Arc;

use leptos::html;
use leptos::prelude::*;

use crate::api::Container;
use crate::store::use_store;

/// The containers matching a search (by id, name or category), those that accept the open file
/// first; each with whether it is suggested for that file.
pub fn rank(
    catalog: &[Arc<Container>],
    query: &str,
    open_file: &str,
) -> Vec<(Arc<Container>, bool)> {
    let query = query.trim().to_lowercase();
    let mut ranked: Vec<(Arc<Container>, bool)> = catalog
        .iter()
        .filter(|c| {
            let m = &c.meta;
            query.is_empty()
                || m.id.to_lowercase().contains(&query)
                || m.name.to_lowercase().contains(&query)
                || m.categories.iter().any(|cat| cat.to_lowercase().contains(&query))
        })
        .map(|c| (c.clone(), c.meta.accepts(open_file)))
        .collect();
    ranked.sort_by_key(|(_, suggested)| !suggested);
    ranked
}

/// A combobox: type to search by name or category, arrows and Enter to pick.
#[component]
pub fn ContainerPicker() -> impl IntoView {
    let store = use_store();
    let input = NodeRef::<html::Input>::new();
    let query = RwSignal::new(String::new());
    let open = RwSignal::new(false);
    let highlighted = RwSignal::new(0usize);
    let open_file = Memo::new(move |_| {
        let active = store.active.get();
        store.files.with(|f| f.get(active).map(|f| f.path.clone()).unwrap_or_default())
    });
    let matches = Memo::new(move |_| {
        store.catalog.with(|catalog| rank(catalog, &query.get(), &open_file.get()))
    });
    let current_name = move || store.a.meta.get().map(|m| m.name.clone()).unwrap_or_default();

    let pick = move |id: String| {
        if id != store.a.container.get_untracked() {
            store.switch_container(&id);
        }
        open.set(false);
        query.set(String::new());
        if let Some(input) = input.get_untracked() {
            let _ = input.blur();
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let count = matches.with_untracked(Vec::len);
        match ev.key().as_str() {
            "ArrowDown" => {
                ev.prevent_default();
                open.set(true);
                highlighted.update(|h| *h = (*h + 1).min(count.saturating_sub(1)));
            }
            "ArrowUp" => {
                ev.prevent_default();
                highlighted.update(|h| *h = h.saturating_sub(1));
            }
            "Enter" if open.get_untracked() => {
                ev.prevent_default();
                let id = matches.with_untracked(|m| {
                    m.get(highlighted.get_untracked()).map(|(c, _)| c.meta.id.clone())
                });
                if let Some(id) = id {
                    pick(id);
                }
            }
            "Escape" => {
                // Not the search field's own Escape, which clears it and so reopens the list.
                ev.prevent_default();
                open.set(false);
                query.set(String::new());
            }
            _ => {}
        }
    };
    let option_id = |id: &str| format!("container-option-{id}");

    view! {
        <div class="picker" data-testid="container-picker">
            <label for="container-search">"Container"</label>
            <div class="picker-box">
                <input
                    id="container-search"
                    node_ref=input
                    type="search"
                    role="combobox"
                    autocomplete="off"
                    aria-autocomplete="list"
                    // Both name the list, which exists only while it is open.
                    aria-controls=move || open.get().then_some("container-list")
                    aria-expanded=move || open.get().to_string()
                    aria-activedescendant=move || {
                        if !open.get() {
                            return None;
                        }
                        matches
                            .with(|m| {
                                m.get(highlighted.get()).map(|(c, _)| option_id(&c.meta.id))
                            })
                    }
                    placeholder=move || {
                        if open.get() { "Search by name or category".to_owned() } else { current_name() }
                    }
                    prop:value=move || if open.get() { query.get() } else { current_name() }
                    on:focus=move |_| {
                        query.set(String::new());
                        highlighted.set(0);
                        open.set(true);
                    }
                    on:blur=move |_| open.set(false)
                    on:input=move |ev| {
                        query.set(event_target_value(&ev));
                        highlighted.set(0);
                        open.set(true);
                    }
                    on:keydown=on_keydown
                />
                <Show when=move || open.get()>
                    <ul id="container-list" class="picker-list" role="listbox" aria-label="Containers">
                        {move || {
                            let current = store.a.container.get();
                            matches
                                .get()
                                .into_iter()
                                .enumerate()
                                .map(|(i, (c, suggested))| {
                                    let id = c.meta.id.clone();
                                    let selected = id == current;
                                    let categories = c.meta.categories.join(", ");
                                    view! {
                                        <li
                                            role="option"
                                            id=option_id(&id)
                                            class="picker-option"
                                            class:highlighted=move || highlighted.get() == i
                                            aria-selected=selected.to_string()
                                            data-container=id.clone()
                                            title=c.meta.description.clone()
                                            on:mousedown=move |ev| {
                                                ev.prevent_default();
                                                pick(id.clone());
                                            }
                                        >
                                            <span class="option-name">{c.meta.name.clone()}</span>
                                            <span class="option-categories">{categories}</span>
                                            {suggested
                                                .then(|| view! { <span class="badge">"suggested"</span> })}
                                            {c
                                                .badge()
                                                .map(|badge| {
                                                    view! {
                                                        <span class="badge warn" data-build=c.build.is_some().to_string()>
                                                            {badge}
                                                        </span>
                                                    }
                                                })}
                                        </li>
                                    }
                                })
                                .collect_view()
                        }}
                    </ul>
                </Show>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(id: &str, categories: &[&str], ext: &str) -> Arc<Container> {
        let meta = serde_json::from_value(json!({
            "id": id, "name": id.to_uppercase(), "version": "1", "description": "d",
            "categories": categories, "image": {"builtin": "busybox"}, "run": {"argv": ["x"]},
            "inputs": {"extensions": [ext]}
        }))
        .unwrap();
        Arc::new(Container { meta, built: true, build: None })
    }

    #[test]
    fn search_matches_names_and_categories_and_suggests_by_extension() {
        let catalog = [
            container("busybox", &["shell"], "sh"),
            container("gcc", &["compiler", "c"], "c"),
            container("python", &["interpreter"], "py"),
        ];
        let ids = |r: Vec<(Arc<Container>, bool)>| {
            r.iter()
                .map(|(c, s)| format!("{}{}", c.meta.id, if *s { "*" } else { "" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(rank(&catalog, "", "main.py")), ["python*", "busybox", "gcc"]);
        assert_eq!(ids(rank(&catalog, "COMPILER", "main.c")), ["gcc*"]);
        assert_eq!(ids(rank(&catalog, "py", "x")), ["python"]);
    }
}
