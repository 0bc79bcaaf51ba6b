use leptos::prelude::*;
use serde_json::Value;
use shared::meta::{OptionKind, OptionSpec};

use crate::browser;
use crate::store::Side;

/// A number typed in a field: whole numbers stay integers (`3`, not `3.0`); anything else
/// becomes a value the metadata refuses, so the preview names the option.
fn number_value(raw: &str) -> Value {
    match raw.trim().parse::<f64>() {
        Ok(n) if n.fract() == 0.0 && n.abs() < 1e15 => Value::from(n as i64),
        Ok(n) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Err(_) => Value::String(raw.to_owned()),
    }
}

/// One option of the form, its field chosen by the option's type. The field starts from
/// `value`; the form is rebuilt when the playground is replaced (Leptos then updates the
/// existing elements, hence `prop:` rather than attributes, which a typed-in field ignores).
#[component]
pub fn OptionField(spec: OptionSpec, value: Value, side: Side) -> impl IntoView {
    let id = spec.id.clone();
    let dom_id = format!("{}option-{}", side.prefix, spec.id);
    let help_id = format!("{dom_id}-help");
    let invalid = {
        let id = id.clone();
        Memo::new(move |_| {
            side.preview
                .with(|p| p.as_ref().err().and_then(|p| p.option.as_deref()) == Some(id.as_str()))
        })
    };
    let set = {
        let id = id.clone();
        move |value: Value| side.set_option(&id, value)
    };
    let help = spec.help.clone().map(|help| {
        view! {
            <p class="help" id=help_id.clone()>
                {help}
            </p>
        }
    });
    let described_by = spec.help.as_ref().map(|_| help_id.clone());
    let label = spec.label.clone();

    let field = match spec.kind.clone() {
        OptionKind::Select { choices, .. } => {
            let current = value.as_str().unwrap_or_default().to_owned();
            view! {
                <label for=dom_id.clone()>{label}</label>
                <select
                    id=dom_id.clone()
                    data-testid=dom_id.clone()
                    aria-describedby=described_by
                    aria-invalid=move || invalid.get().to_string()
                    on:change=move |ev| set(Value::from(event_target_value(&ev)))
                >
                    {choices
                        .into_iter()
                        .map(|c| {
                            let selected = c.value == current;
                            let text = c.label.clone().unwrap_or_else(|| c.value.clone());
                            view! {
                                <option value=c.value prop:selected=selected>
                                    {text}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            }
            .into_any()
        }
        OptionKind::MultiSelect { choices, .. } => {
            let picked: RwSignal<Vec<String>> = RwSignal::new(
                value
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            );
            let boxes = choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let box_id = format!("{dom_id}-{i}");
                    let checked = picked.with_untracked(|p| p.contains(&c.value));
                    let text = c.label.clone().unwrap_or_else(|| c.value.clone());
                    let set = set.clone();
                    let choice = c.value.clone();
                    view! {
                        <span class="check">
                            <input
                                type="checkbox"
                                id=box_id.clone()
                                value=c.value
                                prop:checked=checked
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    picked
                                        .update(|p| {
                                            p.retain(|v| *v != choice);
                                            if on {
                                                p.push(choice.clone());
                                            }
                                        });
                                    set(Value::from(picked.get_untracked()));
                                }
                            />
                            <label for=box_id>{text}</label>
                        </span>
                    }
                })
                .collect_view();
            view! {
                <fieldset
                    class="multi"
                    data-testid=dom_id.clone()
                    aria-describedby=described_by
                    aria-invalid=move || invalid.get().to_string()
                >
                    <legend>{label}</legend>
                    {boxes}
                </fieldset>
            }
            .into_any()
        }
        OptionKind::Bool { .. } => {
            let checked = value.as_bool().unwrap_or(false);
            view! {
                <span class="check">
                    <input
                        type="checkbox"
                        id=dom_id.clone()
                        data-testid=dom_id.clone()
                        aria-describedby=described_by
                        prop:checked=checked
                        on:change=move |ev| set(Value::from(event_target_checked(&ev)))
                    />
                    <label for=dom_id.clone()>{label}</label>
                </span>
            }
            .into_any()
        }
        OptionKind::Number { min, max, step, .. } => {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            view! {
                <label for=dom_id.clone()>{label}</label>
                <input
                    type="number"
                    id=dom_id.clone()
                    data-testid=dom_id.clone()
                    aria-describedby=described_by
                    aria-invalid=move || invalid.get().to_string()
                    min=min.to_string()
                    max=max.to_string()
                    step=step.to_string()
                    prop:value=text
                    on:input=move |ev| set(number_value(&event_target_value(&ev)))
                />
            }
            .into_any()
        }
        OptionKind::Text { pattern, .. } => {
            let text = value.as_str().unwrap_or_default().to_owned();
            // The browser compiles `pattern` with the `v` flag, stricter than the metadata's
            // regex dialect; a pattern it refuses is left out (the preview still checks it).
            let title = pattern.clone();
            let pattern = pattern.filter(|p| browser::valid_html_pattern(p));
            view! {
                <label for=dom_id.clone()>{label}</label>
                <input
                    type="text"
                    id=dom_id.clone()
                    data-testid=dom_id.clone()
                    aria-describedby=described_by
                    aria-invalid=move || invalid.get().to_string()
                    pattern=pattern
                    title=title
                    spellcheck="false"
                    prop:value=text
                    on:input=move |ev| set(Value::from(event_target_value(&ev)))
                />
            }
            .into_any()
        }
    };
    view! {
        <div class="field" class:invalid=invalid>
            {field}
            {help}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_integers_and_junk_is_kept_for_the_error() {
        assert_eq!(number_value("3"), Value::from(3));
        assert_eq!(number_value("0.5"), Value::from(0.5));
        assert_eq!(number_value(""), Value::from(""));
    }
}
