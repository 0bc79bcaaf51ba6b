//! The colour theme: follow the system, or light or dark whatever the system says. The choice
//! is kept in local storage (`pe.theme`, shared with the static site's pages and the embedded
//! view, which are on the same origin) and put on `<html data-theme>`, which the style sheets
//! read; Monaco gets the matching theme.

/// The stored key: `light`, `dark`, or absent for the system's.
pub const STORAGE_KEY: &str = "pe.theme";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    /// The stored value (anything unknown follows the system).
    pub fn parse(stored: Option<&str>) -> Theme {
        match stored {
            Some("light") => Theme::Light,
            Some("dark") => Theme::Dark,
            _ => Theme::System,
        }
    }

    /// What is stored: `None` follows the system.
    pub fn stored(self) -> Option<&'static str> {
        match self {
            Theme::System => None,
            Theme::Light => Some("light"),
            Theme::Dark => Some("dark"),
        }
    }

    /// The next choice of the toggle: the opposite of what shows now, then back to the system.
    pub fn next(self, system_dark: bool) -> Theme {
        match self {
            Theme::System if system_dark => Theme::Light,
            Theme::System => Theme::Dark,
            Theme::Light | Theme::Dark => {
                // Back to following the system, unless that looks the same as now.
                if self.is_dark(system_dark) == system_dark {
                    if system_dark { Theme::Light } else { Theme::Dark }
                } else {
                    Theme::System
                }
            }
        }
    }

    pub fn is_dark(self, system_dark: bool) -> bool {
        match self {
            Theme::System => system_dark,
            Theme::Light => false,
            Theme::Dark => true,
        }
    }

    /// The toggle's words.
    pub fn label(self) -> &'static str {
        match self {
            Theme::System => "Auto",
            Theme::Light => "Light",
            Theme::Dark => "Dark",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toggle_flips_what_shows_then_follows_the_system_again() {
        for system_dark in [false, true] {
            let first = Theme::System.next(system_dark);
            assert_eq!(first.is_dark(system_dark), !system_dark);
            let second = first.next(system_dark);
            assert_eq!(second, Theme::System);
        }
        // A stored choice equal to the system's flips first.
        assert_eq!(Theme::Light.next(false), Theme::Dark);
        assert_eq!(Theme::Dark.next(true), Theme::Light);
    }

    #[test]
    fn stored_values_round_trip() {
        for theme in [Theme::System, Theme::Light, Theme::Dark] {
            assert_eq!(Theme::parse(theme.stored()), theme);
        }
        assert_eq!(Theme::parse(Some("purple")), Theme::System);
    }
}
