use std::collections::HashSet;

use leptos::prelude::*;

use super::output_viewer::OutputViewer;
use crate::api::OutputTree;
use crate::browser;
use crate::format;
use crate::store::Finished;

/// Rows a tree shows at most; the filter narrows the rest.
const MAX_ROWS: usize = 1000;

/// The output files: one tab each for a few (read at once), a file tree for many (a squashfs
/// answer, each file decompressed when it is opened).
#[component]
pub fn OutputFiles(finished: Finished) -> impl IntoView {
    if finished.output.tree.is_some() {
        return view! { <OutputTreeView finished /> }.into_any();
    }
    let output = finished.output.clone();
    if output.files.is_empty() {
        return ().into_any();
    }
    let selected = RwSignal::new(0usize);
    let tabs = output
        .files
        .iter()
        .enumerate()
        .map(|(i, (path, data))| {
            let label = format!("{path} ({})", format::bytes(data.len()));
            view! {
                <button
                    type="button"
                    role="tab"
                    class="output-tab"
                    data-testid="output-tab"
                    data-path=path.clone()
                    aria-selected=move || (selected.get() == i).to_string()
                    on:click=move |_| selected.set(i)
                >
                    {label}
                </button>
            }
        })
        .collect_view();
    view! {
        <div class="output-files">
            <div class="output-tabs" role="tablist" aria-label="Output files">
                {tabs}
            </div>
            <div class="output-view" role="tabpanel">
                {move || {
                    let index = selected.get();
                    let (path, data) = finished.output.files[index].clone();
                    let view = format::view_for(finished.meta.as_deref(), &path, &data);
                    view! { <OutputViewer path data view /> }
                }}
            </div>
        </div>
    }
    .into_any()
}

/// The rows to show: with a filter, every entry whose path contains it (case-insensitive) and the
/// folders above them; without, the entries whose folders are all open.
fn visible_rows(tree: &OutputTree, filter: &str, collapsed: &HashSet<String>) -> Vec<usize> {
    let filter = filter.trim().to_lowercase();
    if !filter.is_empty() {
        let mut keep: HashSet<&str> = HashSet::new();
        for entry in &tree.entries {
            if !entry.is_dir() && entry.path.to_lowercase().contains(&filter) {
                keep.insert(&entry.path);
                let mut path = entry.path.as_str();
                while let Some((parent, _)) = path.rsplit_once('/') {
                    if !keep.insert(parent) {
                        break;
                    }
                    path = parent;
                }
            }
        }
        return (0..tree.entries.len())
            .filter(|&i| keep.contains(tree.entries[i].path.as_str()))
            .collect();
    }
    let mut rows = Vec::new();
    let mut hidden_under: Option<String> = None;
    for (i, entry) in tree.entries.iter().enumerate() {
        if let Some(dir) = &hidden_under {
            if entry.path.len() > dir.len()
                && entry.path.starts_with(dir.as_str())
                && entry.path.as_bytes()[dir.len()] == b'/'
            {
                continue;
            }
            hidden_under = None;
        }
        rows.push(i);
        if entry.is_dir() && collapsed.contains(&entry.path) {
            hidden_under = Some(entry.path.clone());
        }
    }
    rows
}

/// A large output as a tree: collapsible folders with their sizes, a filter by name, the open
/// file in the usual viewers, and "download all" (the squashfs image as it arrived).
#[component]
fn OutputTreeView(finished: Finished) -> impl IntoView {
    let tree = finished.output.tree.clone().expect("a tree");
    let tree = StoredValue::new(tree);
    // Folders start closed when there are many entries, open when few.
    let many = tree.with_value(|t| t.entries.len() > 200);
    let initially: HashSet<String> = if many {
        tree.with_value(|t| {
            t.entries.iter().filter(|e| e.is_dir()).map(|e| e.path.clone()).collect()
        })
    } else {
        HashSet::new()
    };
    let collapsed = RwSignal::new(initially);
    let filter = RwSignal::new(String::new());
    let selected = RwSignal::new(None::<usize>);
    let decoded = RwSignal::new(0u32);
    // Folder sizes: the sum of what they hold, computed once.
    let dir_sizes = StoredValue::new(tree.with_value(|t| {
        let mut sizes = std::collections::HashMap::<String, u64>::new();
        for entry in t.entries.iter().filter(|e| !e.is_dir()) {
            let mut path = entry.path.as_str();
            while let Some((parent, _)) = path.rsplit_once('/') {
                *sizes.entry(parent.to_owned()).or_default() += entry.size();
                path = parent;
            }
        }
        sizes
    }));
    let (files, total) = tree.with_value(|t| (t.file_count(), t.total_bytes()));
    let last_download = StoredValue::new(None::<String>);
    on_cleanup(move || {
        if let Some(url) = last_download.get_value() {
            browser::revoke_url(&url);
        }
    });
    let download_all = move |_| {
        if let Some(url) = last_download.get_value() {
            browser::revoke_url(&url);
        }
        let url = tree.with_value(|t| {
            browser::download(t.image(), "output.sqfs", "application/vnd.squashfs")
        });
        last_download.set_value(url);
    };
    let rows = move || {
        let rows = tree.with_value(|t| filter.with(|f| collapsed.with(|c| visible_rows(t, f, c))));
        let hidden = rows.len().saturating_sub(MAX_ROWS);
        let items = rows
            .into_iter()
            .take(MAX_ROWS)
            .map(|i| {
                let (path, name, depth, is_dir, size, link) = tree.with_value(|t| {
                    let e = &t.entries[i];
                    let size = if e.is_dir() {
                        dir_sizes.with_value(|s| s.get(&e.path).copied().unwrap_or(0))
                    } else {
                        e.size()
                    };
                    let link = match &e.kind {
                        shared::squashfs::NodeKind::Symlink { target } => Some(target.clone()),
                        _ => None,
                    };
                    (e.path.clone(), e.name().to_owned(), e.depth(), e.is_dir(), size, link)
                });
                let indent = format!("padding-left: {}em", 0.4 + depth as f32 * 1.1);
                let label = match &link {
                    Some(target) => format!("{name} → {target}"),
                    None => name,
                };
                let size = format::bytes(size as usize);
                if is_dir {
                    let dir = path.clone();
                    let open = move || !collapsed.with(|c| c.contains(&dir)) || !filter.with(|f| f.trim().is_empty());
                    let dir = path.clone();
                    let open_mark = open.clone();
                    view! {
                        <li role="none">
                            <button
                                type="button"
                                class="tree-row tree-dir"
                                role="treeitem"
                                data-testid="tree-dir"
                                data-path=path.clone()
                                style=indent
                                aria-expanded=move || open().to_string()
                                on:click=move |_| {
                                    collapsed.update(|c| {
                                        if !c.remove(&dir) {
                                            c.insert(dir.clone());
                                        }
                                    })
                                }
                            >
                                <span class="tree-name">{move || if open_mark() { "▾ " } else { "▸ " }}{label}"/"</span>
                                <span class="tree-size">{size}</span>
                            </button>
                        </li>
                    }
                    .into_any()
                } else {
                    view! {
                        <li role="none">
                            <button
                                type="button"
                                class="tree-row tree-file"
                                role="treeitem"
                                data-testid="tree-file"
                                data-path=path.clone()
                                style=indent
                                aria-selected=move || (selected.get() == Some(i)).to_string()
                                disabled=link.is_some()
                                on:click=move |_| selected.set(Some(i))
                            >
                                <span class="tree-name">{label}</span>
                                <span class="tree-size">{size}</span>
                            </button>
                        </li>
                    }
                    .into_any()
                }
            })
            .collect_view();
        let more = (hidden > 0).then(|| {
            view! {
                <li class="tree-more" data-testid="tree-more">
                    {format!("{hidden} more entries: filter by name to narrow the list")}
                </li>
            }
        });
        view! {
            {items}
            {more}
        }
    };
    let viewer = move || {
        let index = selected.get()?;
        let (path, data) = tree.with_value(|t| (t.entries[index].path.clone(), t.read(index)));
        decoded.update(|n| *n += 1);
        Some(match data {
            Ok(data) => {
                let view = format::view_for(finished.meta.as_deref(), &path, &data);
                view! {
                    <h3 class="tree-open" data-testid="tree-open">{path.clone()}</h3>
                    <OutputViewer path data view />
                }
                .into_any()
            }
            Err(e) => {
                view! { <p class="error" role="alert">{format!("{path}: {e}")}</p> }.into_any()
            }
        })
    };
    view! {
        <div class="output-files output-tree" data-testid="output-tree" data-decoded=move || decoded.get().to_string()>
            <div class="tree-bar">
                <span data-testid="tree-summary">
                    {format!("{files} output files, {}", format::bytes(total as usize))}
                </span>
                <input
                    type="search"
                    class="tree-filter"
                    data-testid="tree-filter"
                    placeholder="Filter by name"
                    aria-label="Filter output files by name"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))
                />
                <button type="button" class="button" data-testid="download-all" on:click=download_all
                    title="The squashfs image as the server sent it: unsquashfs, 7-Zip or pe archive unpack open it">
                    "Download all (.sqfs)"
                </button>
            </div>
            <div class="tree-split">
                <ul class="tree" role="tree" aria-label="Output files">
                    {rows}
                </ul>
                <div class="output-view">{viewer}</div>
            </div>
        </div>
    }
}
