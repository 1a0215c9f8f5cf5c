const $ = (id) => document.getElementById(id);
// Every label the page shows, in the agent's language (the data stays as written).
const T = {
  en: {title: "Retention Assistant", key: "API key (agent)", find: "find customer id…", customers: "Customers",
       risk: "Risk", why: "Why, and what to do", timeline: "Timeline", ask: "Ask about this customer",
       question: "e.g. What did they complain about?", send: "Ask", pick: "Pick a customer.",
       scoring: "Scoring…", explaining: "Explaining…", events: "events", up: " ▲ up from ", down: " ▼ down from ",
       as_of: "as of", model: "model", trend: "trend", cost: "cost", done: "done", recorded: "recorded ✓",
       randomised: "randomised for the experiment · ", records: "Worded from the customer's records (no LLM)",
       by_llm: "Worded by the LLM ({b}) and checked against the records",
       added: "{n} reason(s) from the records: the LLM left a top driver out",
       failed: "Worded from the customer's records: the LLM's draft failed its checks",
       following: "The LLM's wording follows…", kept: "kept: ", cached: "cached",
       low: "low", medium: "medium", high: "high", kinds: {}, channels: {}, costs: {},
       unmeasured: "no measurement yet",
       measured: "measured: {u} points retained, 95% CI {lo} to {hi}, n={n}",
       expected: "; for customers like this one: {e} points expected",
       retracted: "The answer failed its checks and was replaced by the records."},
  zh: {title: "客户挽留助手", key: "API 密钥（客服）", find: "查找客户 id…", customers: "客户",
       risk: "流失风险", why: "原因与措施", timeline: "时间线", ask: "询问该客户",
       question: "例如：他们投诉了什么？", send: "提问", pick: "请选择一位客户。",
       scoring: "评分中…", explaining: "解释中…", events: "条事件", up: " ▲ 高于之前的 ", down: " ▼ 低于之前的 ",
       as_of: "截至", model: "模型", trend: "趋势", cost: "成本", done: "已完成", recorded: "已记录 ✓",
       randomised: "实验随机分配 · ", records: "根据客户记录撰写（未使用 LLM）",
       by_llm: "由 LLM（{b}）撰写，并已与记录核对", failed: "根据客户记录撰写：LLM 草稿未通过检查",
       added: "其中 {n} 条原因取自记录：LLM 遗漏了主要因素",
       following: "LLM 措辞生成中…", kept: "保留确定性措辞：", cached: "缓存",
       low: "低", medium: "中", high: "高",
       kinds: {order: "下单", return: "退货", review: "评价", ticket: "客服工单", visit: "访问",
               cancel: "注销请求", note: "备注"},
       channels: {email: "邮件", phone: "电话", sms: "短信", in_app: "应用内", support: "客服"},
       costs: {low: "低", medium: "中", high: "高"},
       unmeasured: "尚无测量结果",
       measured: "已测量：留存 {u} 个百分点，95% 置信区间 {lo} 至 {hi}，n={n}",
       expected: "；对与此类似的客户：预计 {e} 个百分点",
       retracted: "回答未通过检查，已替换为记录。"},
};
const t = (k) => (T[$("lang").value] || T.en)[k] ?? T.en[k];
function translate() {
  document.documentElement.lang = $("lang").value === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-tp]")) el.placeholder = t(el.dataset.tp);
  document.title = t("title");
}
// A key handed over in the address (#key=...) never reaches the server or its logs.
const handed = new URLSearchParams(location.hash.slice(1)).get("key");
if (handed) { sessionStorage.setItem("ra_key", handed); window.history.replaceState(null, "", location.pathname); }
$("key").value = sessionStorage.getItem("ra_key") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("ra_key", $("key").value); search(); });
$("lang").addEventListener("change", () => { translate(); search(); if (current) open(current); });
let current = null, turns = [];  // not `history`: that name is the browser's
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));

async function api(path, opts = {}) {
  const res = await fetch(path, {...opts, headers: {"Authorization": "Bearer " + $("key").value,
    "Content-Type": "application/json", ...(opts.headers || {})}});
  if (!res.ok) {
    let detail = res.statusText;
    try { const p = await res.json(); detail = p.title + ": " + p.detail; } catch (e) {}
    throw new Error(detail);
  }
  return res;
}
function status(msg) { $("status").textContent = msg || ""; }

// Server-sent events from a fetch response (EventSource cannot send the key header).
async function sse(res, on) {
  const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = "";
  for (;;) {
    const {value, done} = await reader.read(); if (done) break;
    buf += dec.decode(value, {stream: true});
    let i;
    while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i).replace(/^\r?\n\r?\n/, "");
      const kind = (block.match(/^event: ?(.*)$/m) || [])[1];
      const data = JSON.parse(block.split(/\r?\n/).filter(l => l.startsWith("data:")).map(l => l.slice(5).trim()).join("\n") || "{}");
      if (kind) on(kind, data);
    }
  }
}

async function search() {
  try {
    const hits = await (await api("/v1/customers?q=" + encodeURIComponent($("q").value))).json();
    $("hits").innerHTML = hits.map(h => `<div data-id="${esc(h.customer_id)}">${esc(h.customer_id)}
      <span class="cite">${h.events} ${t("events")}${h.band ? " · " + t(h.band) : ""}</span></div>`).join("");
    for (const d of $("hits").children) d.onclick = () => open(d.dataset.id);
    status("");
  } catch (e) { status(e.message); }
}
$("q").addEventListener("input", search);

// Who wrote the words, in plain language: the backend's name only where an LLM wrote them.
const writer = (x) => x.fallback ? t("failed") : x.backend === "none" ? t("records") :
  t("by_llm").replace("{b}", x.backend) +
  ((x.added || []).length ? " · " + t("added").replace("{n}", x.added.length) : "");

// An action's measured effect, worded here from the API's numbers (``measurement``).
const signed = (v) => (v >= 0 ? "+" : "") + v.toFixed(1);
const fill = (s, vals) => Object.entries(vals).reduce((out, [k, v]) => out.split(`{${k}}`).join(v), s);
const measure = (m) => !m ? t("unmeasured") :
  fill(t("measured"), {u: signed(m.uplift_points), lo: m.ci_low_points.toFixed(1),
                       hi: m.ci_high_points.toFixed(1), n: m.n.toLocaleString("en-US")}) +
  (m.expected_points == null ? "" : fill(t("expected"), {e: signed(m.expected_points)}));

function render(x, stage, note) {
  const ev = Object.fromEntries(x.evidence.map(e => [e.id, e]));
  const marks = (ids) => ids.flatMap(i => [i, ...((ev[i] && ev[i].events) || [])]);
  const by = stage === "deterministic" ? `<div class="cite pending" id="pending">${esc(t("following"))}</div>` :
    `<div class="cite" id="writer">${esc(writer(x))}${note ? " · " + esc(note) : ""}</div>`;
  $("explain").dataset.stage = stage;
  const bare = (s) => String(s).replace(/[.。]\s*$/, "").toLowerCase();
  const cites = (r) => r.evidence.filter(i => ev[i] && bare(ev[i].text) !== bare(r.text))
    .map(i => esc(ev[i].text)).join("<br>");
  $("explain").innerHTML = "<ol>" + x.reasons.map(r => `<li class="reason" data-ev="${esc(marks(r.evidence).join(" "))}">
    ${esc(r.text)}${cites(r) ? `<div class="cite">${cites(r)}</div>` : ""}</li>`).join("") +
    "</ol>" + (x.experiment && x.experiment.arm === "holdout" ?
      `<div class="holdout" id="holdout"><b>${esc(x.experiment.why.split(". ")[0])}.</b> ${esc(x.experiment.why.split(". ").slice(1).join(". "))}</div>` : "") +
    "<ul>" + x.actions.map(a => `<li class="action"><b>${esc(a.playbook_id)}</b> (${esc(t("channels")[a.channel] || a.channel)}, ${esc(t("costs")[a.cost] || a.cost)} ${esc(t("cost"))}): ${esc(a.text)}
    <div class="cite">${esc(a.why)}</div>
    <div class="cite measure">${a.explored ? esc(t("randomised")) : ""}${esc(measure(a.measurement))}</div>
    <button class="done" data-action="${esc(a.playbook_id)}" data-source="${a.explored ? "random" : "agent"}"
      data-channel="${esc(a.channel)}">${esc(t("done"))}</button></li>`).join("") + "</ul>" + by;
  for (const li of document.querySelectorAll(".reason")) li.onclick = () => highlight(li.dataset.ev.split(" "));
  for (const b of document.querySelectorAll("button.done")) b.onclick = () => done(x.customer_id, b);
}

async function open(id) {
  current = id; turns = []; $("log").innerHTML = "";
  for (const d of $("hits").children) d.classList.toggle("sel", d.dataset.id === id);
  $("riskbody").textContent = t("scoring"); $("explain").textContent = t("explaining");
  $("explain").dataset.stage = "";
  try {
    const [risk, events] = await Promise.all([
      api(`/v1/customers/${encodeURIComponent(id)}/risk`).then(r => r.json()),
      api(`/v1/customers/${encodeURIComponent(id)}/events`).then(r => r.json())]);
    if (current !== id) return;
    const trend = risk.previous == null ? "" :
      (risk.probability > risk.previous ? t("up") : t("down")) + Math.round(100 * risk.previous) + "% · ";
    const line = (risk.trend || []).slice(-8).map(p => `${esc(p.as_of.slice(5))}: ${Math.round(100 * p.probability)}%`).join(" → ");
    $("riskbody").innerHTML = `<span class="p">${Math.round(100 * risk.probability)}%</span>
      <span class="band ${risk.band}">${esc(t(risk.band))}</span> <span class="cite">${trend}${esc(t("as_of"))} ${esc(risk.as_of)} · ${esc(t("model"))} ${esc(risk.model_version)}</span>` +
      (line ? `<div class="cite" id="trend">${esc(t("trend"))} ${line}</div>` : "");
    $("timeline").innerHTML = events.map(e => `<div class="ev" id="${esc(e.event_id)}">
      <span class="k">${esc(t("kinds")[e.event] || e.event)}</span> <span class="cite">${e.ts.slice(0, 10)}</span>
      ${e.amount != null ? esc(e.amount.toFixed(2)) : ""} ${esc(e.item || "")}
      ${e.rating != null ? esc(e.rating) + "/5" : ""} ${e.text ? "“" + esc(e.text) + "”" : ""}</div>`).join("");
    // Deterministic reasons at once; the LLM's checked wording replaces them when it comes.
    const res = await api(`/v1/customers/${encodeURIComponent(id)}/explanation/stream?lang=${$("lang").value}`);
    let shown = null;
    await sse(res, (kind, data) => {
      if (current !== id) return;
      if (kind === "deterministic") { shown = data.explanation; render(shown, "deterministic"); }
      if (kind === "final") render(data.explanation, "final", data.cached ? t("cached") : "");
      if (kind === "kept") render(data.explanation || shown, "kept", t("kept") + (data.reason || ""));
    });
    status("");
  } catch (e) { status(e.message); }
}

async function done(id, button) {
  button.disabled = true;
  try {
    await api(`/v1/customers/${encodeURIComponent(id)}/actions`, {method: "POST", body: JSON.stringify(
      {action_id: button.dataset.action, source: button.dataset.source, channel: button.dataset.channel || null})});
    button.textContent = t("recorded");
  } catch (e) { button.disabled = false; status(e.message); }
}

function highlight(ids) {
  for (const el of document.querySelectorAll(".ev")) el.classList.toggle("hl", ids.includes(el.id));
  const first = ids.map(i => document.getElementById(i)).find(Boolean);
  if (first) first.scrollIntoView({block: "center"});
}

async function ask() {
  const q = $("question").value.trim();
  if (!current || !q) return;
  $("question").value = "";
  turns.push({role: "user", content: q});
  $("log").insertAdjacentHTML("beforeend", `<div class="msg user">${esc(q)}</div>`);
  const bot = document.createElement("div"); bot.className = "msg bot"; $("log").appendChild(bot);
  try {
    const res = await api(`/v1/customers/${encodeURIComponent(current)}/chat`, {method: "POST",
      body: JSON.stringify({messages: turns, lang: $("lang").value})});
    let answer = "";
    await sse(res, (kind, data) => {
      if (kind === "token") { answer += data.text; bot.textContent = answer; }
      if (kind === "retracted") { answer = data.text; bot.textContent = answer;
        $("log").insertAdjacentHTML("beforeend", `<div class="msg note">${esc(t("retracted"))}</div>`); }
      if (kind === "done") { answer = data.text; bot.textContent = answer; }
      $("log").scrollTop = $("log").scrollHeight;
    });
    turns.push({role: "assistant", content: answer});
  } catch (e) { bot.innerHTML = `<span class="err">${esc(e.message)}</span>`; }
}
$("send").onclick = ask;
$("question").addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); ask(); } });
translate();
if ($("key").value) search();
