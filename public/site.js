// Filters the tool index as you type (the page works without it: every tool is listed).
document.addEventListener("DOMContentLoaded", () => {
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
