// The batch page follows its batch over one server-sent event stream: each event is
// the whole snapshot (tasks, progress, ETA, cost), drawn with textContent only.
"use strict";
(function () {
  const section = document.getElementById("batch");
  const batchId = section.dataset.batch;
  const token = document.querySelector('meta[name="gs-token"]').content;
  const tbody = document.querySelector("#tasks tbody");

  function usd(v) { return v === null || v === undefined ? "unknown" : "$" + v.toFixed(4); }
  function eta(s) {
    if (s === null || s === undefined) return "";
    return Math.floor(s / 60) + ":" + String(Math.floor(s % 60)).padStart(2, "0");
  }
  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }
  function status(value) { return el("span", { className: "status s-" + value, textContent: value }); }
  function post(action, label, cls) {
    const form = el("form", { method: "post", action: action });
    form.append(el("input", { type: "hidden", name: "token", value: token }));
    form.append(el("button", { className: cls, textContent: label }));
    return form;
  }
  function row(t) {
    const tr = el("tr", { id: "task-" + t.id });
    tr.dataset.stage = t.stage;
    const lesson = t.lesson_url ? [el("a", { className: "lesson", href: t.lesson_url, textContent: "open" })] : [];
    const retry = t.stage === "failed"
      ? [post("/batches/" + batchId + "/tasks/" + t.id + "/retry", "Retry", "retry")] : [];
    tr.append(
      el("td", { textContent: t.id }),
      el("td", { className: "wrap", textContent: t.video }),
      el("td", { className: "stage" }, [status(t.stage), " ", el("span", { className: "muted", textContent: t.activity })]),
      el("td", { textContent: t.attempts }),
      el("td", { className: "wrap bad", textContent: t.error_kind + (t.error ? ": " + t.error : "") }),
      el("td", { textContent: t.cost_usd === null ? "" : usd(t.cost_usd) }),
      el("td", {}, lesson),
      el("td", {}, retry),
    );
    return tr;
  }
  function draw(b) {
    const s = document.getElementById("status");
    s.textContent = b.status === "stopping" ? "stopping…" : b.status;
    s.className = "status s-" + b.status;
    document.getElementById("progress").value = b.progress;
    document.getElementById("count").textContent = b.finished + "/" + b.total;
    document.getElementById("eta").textContent = eta(b.eta_s);
    document.getElementById("cost").textContent = usd(b.cost_usd);
    const error = document.getElementById("run-error");
    error.textContent = b.error;
    error.hidden = !b.error;
    tbody.replaceChildren(...b.tasks.map(row));
    section.dataset.status = b.status;
    section.dataset.live = b.here || b.running ? "yes" : "no";
  }
  const source = new EventSource("/batches/" + encodeURIComponent(batchId) + "/events");
  source.addEventListener("batch", (e) => draw(JSON.parse(e.data)));
})();
