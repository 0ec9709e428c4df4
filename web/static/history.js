// Show journal times (UTC in the page) in the viewer's local time.
"use strict";
document.querySelectorAll("time[datetime]").forEach((el) => {
  const d = new Date(el.getAttribute("datetime"));
  if (!isNaN(d)) { el.textContent = d.toLocaleString(); el.title = el.getAttribute("datetime"); }
});
document.querySelectorAll("time[data-epoch]").forEach((el) => {
  const d = new Date(Number(el.dataset.epoch) * 1000);
  if (!isNaN(d)) { el.textContent = d.toLocaleString(); }
});
