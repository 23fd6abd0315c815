"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const spec = document.getElementById("chart-spec");
  if (spec && window.vegaEmbed) {
    window.vegaEmbed("#chart", JSON.parse(spec.textContent), { actions: false, renderer: "svg" });
  }
});
