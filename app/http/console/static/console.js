// The console works without this script; it only makes it kinder. Nothing else is loaded from anywhere.
"use strict";
(function () {
  // Every time in the viewer's time zone; UTC stays in the title, shown on hover.
  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  document.querySelectorAll("time[datetime]").forEach(function (element) {
    var instant = new Date(element.getAttribute("datetime"));
    if (!isNaN(instant)) {
      element.textContent = format.format(instant);
    }
  });
})();
