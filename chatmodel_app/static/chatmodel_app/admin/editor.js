// chatmodel_app admin: model-name suggestions in the version editor, and the A/B share preview when publishing.
(function () {
  "use strict";

  // Suggestions come from LiteLLM's model list; fetched on first focus so the page itself never waits for it.
  function loadModelSuggestions(list) {
    if (list.dataset.loaded) return;
    list.dataset.loaded = "1";
    fetch(list.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { models: [] }; })
      .then(function (data) {
        var have = new Set(Array.from(list.options).map(function (o) { return o.value; }));
        var fragment = document.createDocumentFragment();
        (data.models || []).forEach(function (name) {
          if (have.has(name)) return;
          var option = document.createElement("option");
          option.value = name;
          fragment.appendChild(option);
        });
        list.appendChild(fragment);
      })
      .catch(function () { delete list.dataset.loaded; });
  }

  function setUpSuggestions() {
    var list = document.getElementById("chatmodel-known-models");
    if (!list || !list.dataset.src) return;
    document.querySelectorAll('input[list="chatmodel-known-models"]').forEach(function (input) {
      input.addEventListener("focus", function () { loadModelSuggestions(list); }, { once: true });
    });
  }

  // Show each published version's share of sessions as the ratios are typed.
  function setUpShares() {
    document.querySelectorAll(".chatmodel-ab-group").forEach(function (group) {
      var rows = Array.from(group.querySelectorAll(".chatmodel-ab-row"));
      function update() {
        var weights = rows.map(function (row) {
          var keep = row.querySelector('input[type="checkbox"]');
          var live = row.classList.contains("chosen") || (keep && keep.checked);
          var ratio = parseFloat((row.querySelector("input.chatmodel-ratio") || {}).value);
          if (!live) return 0;
          return isFinite(ratio) && ratio > 0 ? ratio : row.classList.contains("chosen") ? 1 : 0;
        });
        var total = weights.reduce(function (a, b) { return a + b; }, 0);
        rows.forEach(function (row, i) {
          var cell = row.querySelector(".chatmodel-share");
          if (cell) cell.textContent = weights[i] && total ? Math.round((1000 * weights[i]) / total) / 10 + "%" : "-";
        });
      }
      group.addEventListener("input", update);
      group.addEventListener("change", update);
      update();
    });
  }

  function ready() {
    setUpSuggestions();
    setUpShares();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
