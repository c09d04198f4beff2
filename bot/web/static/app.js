// Keyboard navigation for the inbox, as in mail readers: j/k move the
// selection down/up, o (or Enter) opens the selected series. Loaded as a
// file: the Content-Security-Policy forbids inline script.
(function () {
  "use strict";
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" ||
      (target && target.isContentEditable);
  }
  function init() {
    var table = document.getElementById("inbox");
    if (!table) { return; }
    var rows = Array.prototype.slice.call(table.querySelectorAll("tr.row"));
    if (!rows.length) { return; }
    var current = -1;
    function select(i) {
      if (current >= 0) { rows[current].classList.remove("selected"); }
      current = Math.max(0, Math.min(rows.length - 1, i));
      rows[current].classList.add("selected");
      rows[current].scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (ev) {
      if (ev.altKey || ev.ctrlKey || ev.metaKey || typing(ev.target)) { return; }
      if (ev.key === "j") { select(current + 1); ev.preventDefault(); }
      else if (ev.key === "k") { select(current < 0 ? 0 : current - 1); ev.preventDefault(); }
      else if ((ev.key === "o" || ev.key === "Enter") && current >= 0) {
        var link = rows[current].querySelector("a.open");
        if (link) { window.location.href = link.getAttribute("href"); ev.preventDefault(); }
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
