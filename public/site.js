// The static site's script. Loaded in <head> without defer, so the theme is set before the page
// is drawn; the rest waits for the document.

// Light or dark: the choice the app's theme toggle stored (same origin, key `pe.theme`), else
// the system's (the style sheet's light-dark() colours follow `color-scheme`).
const THEME_KEY = "pe.theme";
function storedTheme() {
  try {
    const value = localStorage.getItem(THEME_KEY);
    return value === "light" || value === "dark" ? value : null;
  } catch {
    return null;
  }
}
function applyTheme() {
  const theme = storedTheme();
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme();

document.addEventListener("DOMContentLoaded", () => {
  // The theme toggle: flips what shows, a second press follows the system again.
  const toggle = document.getElementById("theme-toggle");
  if (toggle) {
    const systemDark = matchMedia("(prefers-color-scheme: dark)");
    const render = () => {
      const theme = storedTheme();
      const dark = theme ? theme === "dark" : systemDark.matches;
      const word = theme === "dark" ? "Dark" : theme === "light" ? "Light" : "Auto";
      toggle.textContent = `${dark ? "☾" : "☀"} ${word}`;
      toggle.setAttribute("aria-label", theme ? `${word} theme` : `${word} theme: following the system (${dark ? "dark" : "light"})`);
    };
    toggle.addEventListener("click", () => {
      const theme = storedTheme();
      const shows = theme ? theme === "dark" : systemDark.matches;
      const next = theme && shows !== systemDark.matches ? null : shows ? "light" : "dark";
      try {
        if (next) localStorage.setItem(THEME_KEY, next);
        else localStorage.removeItem(THEME_KEY);
      } catch {}
      applyTheme();
      render();
    });
    systemDark.addEventListener("change", render);
    toggle.hidden = false;
    render();
  }

  // Code blocks that scroll sideways can be scrolled from the keyboard too.
  for (const pre of document.querySelectorAll("pre")) {
    if (pre.scrollWidth > pre.clientWidth || pre.scrollHeight > pre.clientHeight) pre.tabIndex = 0;
  }

  // Filters the tool index as you type (the page works without it: every tool is listed).
  const box = document.getElementById("tool-search");
  if (!box) return;
  box.addEventListener("input", () => {
    const q = box.value.trim().toLowerCase();
    for (const card of document.querySelectorAll("[data-tool]")) {
      card.hidden = q !== "" && !card.dataset.search.includes(q);
    }
    for (const group of document.querySelectorAll("[data-category]")) {
      group.hidden = group.querySelectorAll("[data-tool]:not([hidden])").length === 0;
    }
  });
});
