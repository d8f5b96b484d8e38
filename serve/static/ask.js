// imgidx serve: help to ask. Per term of the query, a 3x3 cell picker and a confidence slider that write
// the query text (the server spells the term again: /api/rewrite), so the text in the box stays what runs
// and can be copied to imgidx query. Without JavaScript the page has the plain text box only.
"use strict";

(function askHelp() {
  const box = document.getElementById("q");
  const panel = document.getElementById("ask");
  if (!box || !panel) return;
  const defaultMin = Number(panel.dataset.min || "0.3");
  let timer = null, shown = null;

  async function refresh() {
    const text = box.value;
    if (text === shown) return;
    shown = text;
    if (!text.trim()) { panel.hidden = true; panel.replaceChildren(); return; }
    const response = await fetch("/api/terms?" + new URLSearchParams({ text }));
    if (shown !== text) return;
    const found = await response.json();
    render(found);
  }

  function render(found) {
    const focused = document.activeElement && panel.contains(document.activeElement) ? document.activeElement.dataset : null;
    panel.replaceChildren();
    found.terms.forEach((term, number) => {
      if (!term.editable) return;
      const everywhere = term.cells.length === found.cells.length;
      const chosen = new Set(everywhere ? [] : term.cells);
      const row = document.createElement("div");
      row.className = "term";
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = term.label;
      const grid = document.createElement("div");
      grid.className = "picker";
      grid.setAttribute("role", "group");
      grid.setAttribute("aria-label", "where " + term.label + " is");
      found.cells.forEach((cellName, cell) => {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.cell = String(cell);
        button.dataset.control = number + "-cell-" + cell;
        button.title = cellName;
        button.setAttribute("aria-label", cellName);
        button.setAttribute("aria-pressed", chosen.has(cell) ? "true" : "false");
        button.addEventListener("click", () => pick(number, chosen, cell, grid, hint));
        grid.append(button);
      });
      const slider = document.createElement("input");
      slider.type = "range";
      slider.min = "0"; slider.max = "100"; slider.step = "5";
      slider.value = String(Math.round(100 * (term.threshold === null ? defaultMin : term.threshold)));
      slider.setAttribute("aria-label", "confidence of " + term.label);
      slider.dataset.control = number + "-slider";
      const value = document.createElement("output");
      value.textContent = term.threshold === null ? "≥ " + slider.value + "% (default)" : "≥ " + slider.value + "%";
      slider.addEventListener("input", () => { value.textContent = "≥ " + slider.value + "%"; });
      slider.addEventListener("change", () => write(number, [...chosen], Number(slider.value) / 100));
      const hint = document.createElement("span");
      hint.className = "hint";
      hint.setAttribute("aria-live", "polite");
      row.append(name, grid, slider, value, hint);
      panel.append(row);
    });
    panel.hidden = panel.children.length === 0;
    if (focused && focused.control) {
      const again = panel.querySelector(`[data-control="${focused.control}"]`);
      if (again) again.focus();
    }
  }

  async function pick(number, chosen, cell, grid, hint) {
    if (chosen.has(cell)) chosen.delete(cell); else chosen.add(cell);
    if (await write(number, [...chosen])) return;
    // Cells that are no region yet (two of a row): kept here until they are one; the text is unchanged.
    grid.querySelectorAll("button").forEach((button) => {
      button.setAttribute("aria-pressed", chosen.has(Number(button.dataset.cell)) ? "true" : "false");
    });
    hint.textContent = "pick a cell, a row, a column or the corners";
  }

  async function write(number, cells, threshold) {
    const params = { text: box.value, term: String(number), cells: cells.join(",") };
    if (threshold !== undefined) params.threshold = String(threshold);
    const response = await fetch("/api/rewrite?" + new URLSearchParams(params));
    if (!response.ok) return false;
    const found = await response.json();
    box.value = found.text;
    await refresh();
    return true;
  }

  box.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 200); });
  refresh();
})();

(function looserQueries() {
  // A search that found nothing links to its looser queries; counting them is a request of its own, so
  // the search page comes as fast as any other, and the list takes the link's place when it is there.
  const holder = document.getElementById("relaxed");
  if (!holder || !holder.dataset.src) return;
  fetch(holder.dataset.src).then(async (response) => {
    const fragment = document.createElement("template");
    fragment.innerHTML = await response.text();
    holder.replaceChildren(fragment.content);
  }).catch(() => {});
})();

(function tickWithTheKeyboard() {
  // A card is one tab stop (its picture); Space there ticks its box for the download form, as a click does.
  const grid = document.getElementById("grid");
  if (!grid) return;
  grid.addEventListener("keydown", (event) => {
    if (event.key !== " " || !event.target.matches(".card .thumb")) return;
    const box = event.target.closest(".card").querySelector(".pick input");
    if (!box) return;
    event.preventDefault();
    box.checked = !box.checked;
  });
})();
