// changetrail's web view: the little that needs JavaScript. Every page reads without it; this
// adds local times, keyboard moves on the timeline, and its live updates.
"use strict";

const localTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

// Times arrive in UTC (the title keeps it, for hover); shown in the viewer's time zone.
function localizeTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) el.textContent = localTime.format(at);
  }
}

// j/k move through the timeline's rows, Enter opens the selected one (its link has focus).
function timelineKeys(list) {
  let selected = -1;
  const rows = () => list.querySelectorAll("li");
  const select = (index) => {
    const all = rows();
    if (all.length === 0) return;
    selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((row, i) => row.classList.toggle("selected", i === selected));
    const link = all[selected].querySelector("a");
    if (link) link.focus();
  };
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (target instanceof HTMLElement && target.closest("input, select, textarea, button")) return;
    if (event.key === "j") { select(selected + 1); event.preventDefault(); }
    else if (event.key === "k") { select(selected - 1); event.preventDefault(); }
  });
}

// New items of the stream go on top, marked, with a count of how many arrived.
function liveUpdates(url, list) {
  const marker = document.getElementById("new-items");
  const empty = document.getElementById("empty");
  let arrived = 0;
  const source = new EventSource(url);
  source.addEventListener("item", (event) => {
    // The server renders the row with the page's own template; its markup is escaped there.
    const fragment = document.createRange().createContextualFragment(event.data);
    const row = fragment.querySelector("li");
    if (!row || list.querySelector(`li[data-id="${row.dataset.id}"]`)) return;
    row.classList.add("new");
    localizeTimes(row);
    list.prepend(row);
    if (empty) empty.hidden = true;
    arrived += 1;
    marker.textContent = arrived === 1 ? "1 new item" : `${arrived} new items`;
    marker.hidden = false;
  });
  // On an error or an overflow the browser reconnects by itself, sending Last-Event-ID.
}

document.addEventListener("DOMContentLoaded", () => {
  localizeTimes(document);
  const list = document.getElementById("timeline");
  if (list) timelineKeys(list);
  const main = document.getElementById("main");
  const stream = main && main.dataset.stream;
  if (list && stream) liveUpdates(stream, list);
});
