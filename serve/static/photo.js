// imgidx serve, photo page: switch the overlay, show where a chosen label scores, place the detectors' boxes,
// and the arrow keys go to the previous and next match.
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

  for (const box of frame.querySelectorAll(".bbox")) {
    for (const [side, key] of [["left", "left"], ["top", "top"], ["width", "width"], ["height", "height"]]) {
      box.style[side] = (100 * Number(box.dataset[key])) + "%";
    }
  }

  const form = document.getElementById("label-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = document.getElementById("label").value.trim();
    if (!label) return;
    const response = await fetch(form.action + "?" + new URLSearchParams({ label }));
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
