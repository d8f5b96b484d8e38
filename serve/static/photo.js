// imgidx serve, photo page: switch the overlay at once and show where a chosen label scores without a
// reload (without a script, the same form reloads the page with the choice), and the arrow keys go to the
// previous and next match. The detectors' boxes are placed by a style sheet, not here.
"use strict";

(function photoPage() {
  const frame = document.getElementById("frame");
  if (!frame) return;
  const modes = document.querySelectorAll('input[name="mode"]');
  const result = document.getElementById("label-result");

  function show(mode) {
    frame.dataset.mode = mode;
    for (const input of modes) input.checked = input.value === mode;
  }
  for (const input of modes) input.addEventListener("change", () => show(input.value));

  const form = document.getElementById("label-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = document.getElementById("label").value.trim();
    if (!label) {
      const chosen = form.querySelector('input[name="mode"]:checked');
      if (chosen) show(chosen.value);
      return;
    }
    const response = await fetch(form.dataset.api + "?" + new URLSearchParams({ label }));
    const found = await response.json();
    result.hidden = false;
    if (found.error) {
      result.textContent = found.error;
      return;
    }
    result.textContent = `${found.label}: ${found.classes} class${found.classes === 1 ? "" : "es"}; ` +
      "each cell is tinted by the label's confidence there";
    frame.querySelectorAll(".overlay.heat .cell").forEach((cell, index) => {
      const score = found.cells[index];
      cell.style.backgroundColor = `rgba(255, 40, 0, ${score ? 0.7 * score.value : 0})`;
      cell.querySelector(".tag").textContent = score ? score.text : "";
      cell.querySelector(".tag").hidden = !score;
    });
    show("heat");
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea")) return;
    const link = document.getElementById(event.key === "ArrowLeft" ? "previous" : event.key === "ArrowRight" ? "next" : "");
    if (link) link.click();
  });
})();
