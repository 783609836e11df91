// Dashboard glue: charts from the per-minute metrics (uPlot), the live indicator. No inline
// script anywhere (the Content-Security-Policy forbids it); htmx does the rest.
(function () {
  "use strict";
  var charts = [];

  function draw(el) {
    fetch(el.dataset.metrics, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (m) {
      var series = el.dataset.series;
      var values = m[series];
      var label = series === "error_rate" ? "error rate" : "jobs/min";
      var data = [m.t, values];
      if (el._plot) { el._plot.setData(data); return; }
      el._plot = new uPlot({
        width: Math.max(280, el.clientWidth || 480), height: 180,
        scales: series === "error_rate" ? {y: {range: [0, 1]}} : {},
        series: [{}, {label: label, stroke: series === "error_rate" ? "#c0392b" : "#2c7be5",
                      fill: series === "error_rate" ? "rgba(192,57,43,0.12)" : "rgba(44,123,229,0.12)",
                      value: function (u, v) { return v == null ? "-" : (series === "error_rate" ? (v * 100).toFixed(1) + "%" : v); }}],
        axes: [{}, {values: function (u, ticks) { return ticks.map(function (v) { return series === "error_rate" ? Math.round(v * 100) + "%" : v; }); }}]
      }, data, el);
      charts.push(el);
    }).catch(function () { el.textContent = "metrics unavailable"; });
  }

  var pending = null;
  function refreshCharts() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; charts.forEach(draw); }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".chart[data-metrics]").forEach(draw);
    var live = document.getElementById("live");
    document.body.addEventListener("htmx:sseOpen", function () { if (live) live.className = "live on"; });
    document.body.addEventListener("htmx:sseError", function () { if (live) live.className = "live off"; });
    document.body.addEventListener("htmx:sseMessage", refreshCharts);
  });
})();
