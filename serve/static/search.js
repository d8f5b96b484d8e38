// imgidx serve: label completion in the query box, more matches on scroll, the caret at a query's error.
// Plain JavaScript, no library; every text the server sends is escaped there, and new nodes are built
// from the server's own HTML fragments or with textContent.
"use strict";

(function completion() {
  const box = document.getElementById("q");
  const list = document.getElementById("suggestions");
  if (!box || !list) return;
  let start = 0, active = -1, timer = null, asked = "";

  const position = box.dataset.errorPosition;
  if (position !== undefined) {
    box.focus();
    box.setSelectionRange(Number(position), Number(position));
  }

  // An ARIA combobox: the box says whether its list is open and which option is highlighted.
  function close() {
    list.hidden = true; list.replaceChildren(); active = -1;
    box.setAttribute("aria-expanded", "false"); box.removeAttribute("aria-activedescendant");
  }

  function choose(name) {
    const caret = box.selectionStart;
    box.value = box.value.slice(0, start) + name + " " + box.value.slice(caret);
    const end = start + name.length + 1;
    box.setSelectionRange(end, end);
    close();
    box.focus();
  }

  function highlight(index) {
    const items = list.querySelectorAll("li");
    items.forEach((item, i) => {
      item.classList.toggle("active", i === index);
      item.setAttribute("aria-selected", String(i === index));
    });
    active = index;
    box.setAttribute("aria-activedescendant", items[index].id);
  }

  async function suggest() {
    const before = box.value.slice(0, box.selectionStart);
    if (before === asked) return;
    asked = before;
    const response = await fetch("/api/complete?" + new URLSearchParams({ text: before }));
    if (!response.ok || asked !== before) return;
    const found = await response.json();
    list.replaceChildren();
    start = found.start;
    for (const [i, name] of found.names.entries()) {
      const item = document.createElement("li");
      item.textContent = name;
      item.id = "suggestion-" + i;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", "false");
      item.addEventListener("mousedown", (event) => { event.preventDefault(); choose(name); });
      list.append(item);
    }
    list.hidden = found.names.length === 0;
    box.setAttribute("aria-expanded", String(!list.hidden));
    box.removeAttribute("aria-activedescendant");
    active = -1;
  }

  box.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, 120); });
  box.addEventListener("blur", () => setTimeout(close, 100));
  box.addEventListener("keydown", (event) => {
    // Esc closes the suggestions and never wipes the query (a search box's own Esc would).
    if (event.key === "Escape") event.preventDefault();
    if (list.hidden) return;
    const count = list.children.length;
    if (event.key === "ArrowDown") { highlight((active + 1) % count); event.preventDefault(); }
    else if (event.key === "ArrowUp") { highlight((active - 1 + count) % count); event.preventDefault(); }
    else if ((event.key === "Enter" || event.key === "Tab") && active >= 0) {
      choose(list.children[active].textContent); event.preventDefault();
    } else if (event.key === "Escape") { close(); }
  });
})();

(function moreOnScroll() {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const seen = new Set([...grid.querySelectorAll(".card")].map((card) => card.dataset.hash).filter(Boolean));
  let loading = false;

  async function loadMore(sentinel) {
    if (loading) return;
    loading = true;
    try {
      const response = await fetch(sentinel.dataset.next);
      const fragment = document.createElement("template");
      fragment.innerHTML = await response.text();
      for (const item of [...fragment.content.children]) {
        if (item.classList.contains("card")) {
          const hash = item.dataset.hash;
          if (hash && seen.has(hash)) continue;  // a copy of a photo an earlier page showed
          if (hash) seen.add(hash);
        }
        grid.insertBefore(item, sentinel);
      }
      sentinel.remove();
      renumber();
      watch();
    } catch (error) {
      sentinel.textContent = "could not load more matches: " + error;
      sentinel.classList.add("failed");
    } finally {
      loading = false;
    }
  }

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) if (entry.isIntersecting) loadMore(entry.target);
  }, { rootMargin: "600px" });

  // The cards are numbered as shown: a copy dropped above leaves no gap in the numbers.
  function renumber() {
    const cards = grid.querySelectorAll(".card .rank");
    const first = cards.length ? parseInt(cards[0].textContent.slice(1), 10) : 1;
    cards.forEach((rank, i) => { rank.textContent = "#" + (first + i); });
  }

  function watch() {
    const sentinel = grid.querySelector("li.more[data-next]");
    if (sentinel) observer.observe(sentinel);
  }
  watch();
})();
