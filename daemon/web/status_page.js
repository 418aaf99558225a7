// connwatch status page: refreshes the server-rendered page in place from
// the compact API every few seconds, and filters as you type. Plain DOM, no
// library; every string from the daemon goes in as text, never as HTML.
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var EVENTS = 15;
  var CUTOFF_TITLE = "Connections to this target keep dying at this idle age: a NAT, firewall " +
      "or load balancer on the path forgets idle flows. Set keepalive.idle well below it.";
  var CANARY_TITLE = "The canary: a fresh connection to the target beside the held one, " +
      "every interval, closed with RST.";
  var $ = function (id) { return document.getElementById(id); };
  var form = $("filter"), q = $("q"), state = $("state"), sort = $("sort"), live = $("live");
  var params = new URLSearchParams(window.location.search);
  var offset = parseInt(params.get("offset") || "0", 10) || 0;
  var limit = parseInt(params.get("limit") || "0", 10) || 0;
  // ?refresh=SECONDS (at least 1) changes the pace, e.g. for a wall display.
  var pace = parseFloat(params.get("refresh") || "");
  if (pace >= 1) REFRESH_MS = pace * 1000;
  var inFlight = false, timer = null, debounce = null, refreshes = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function duration(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  function utc(t) {
    return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }
  function percent(f) {
    if (f === null || f === undefined) return "\u2014";
    if (f >= 1) return "100%";
    return (Math.floor(f * 10000) / 100).toFixed(2) + "%";
  }
  function stateWord(t) {
    if (t.up) return "up";
    return t.state === "backoff" ? "down" : "down, " + t.state;
  }
  function query(extra) {
    var p = new URLSearchParams();
    if (q.value) p.set("q", q.value);
    if (state.value) p.set("state", state.value);
    if (sort.value !== "state") p.set("sort", sort.value);
    if (offset) p.set("offset", String(offset));
    if (limit) p.set("limit", String(limit));
    if (extra) p.set("compact", "1");
    return p.toString();
  }

  var SVG = "http://www.w3.org/2000/svg";
  function strip(text) {
    var up = 0, down = 0, partial = 0, i;
    for (i = 0; i < text.length; i++) {
      var c = text[i];
      if (c === "u") up++; else if (c === "d") down++; else if (c !== "-") partial++;
    }
    var title = "last hour, a minute each: " + up + " min up, " + down + " min down, " +
        partial + " min partly down";
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "strip");
    svg.setAttribute("width", "120");
    svg.setAttribute("height", "14");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    var t = document.createElementNS(SVG, "title");
    t.textContent = title;
    svg.appendChild(t);
    for (i = 0; i < text.length;) {
      var j = i;
      while (j < text.length && text[j] === text[i]) j++;
      var ch = text[i];
      var r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", ch === "u" ? "m-u" : ch === "d" ? "m-d" : ch === "-" ? "m-n" : "m-p");
      r.setAttribute("x", String(i * 2));
      r.setAttribute("y", "0");
      r.setAttribute("width", String((j - i) * 2));
      r.setAttribute("height", "14");
      svg.appendChild(r);
      i = j;
    }
    return svg;
  }

  function row(t, now) {
    var cls = t.up ? "up" : "down";
    var tr = el("tr", "row-" + cls);
    tr.appendChild(el("td", "name", t.name));
    tr.appendChild(el("td", "addr", t.endpoint ? t.address + " \u2192 " + t.endpoint : t.address));
    var labels = el("td", "labels");
    Object.keys(t.labels).forEach(function (k) {
      labels.appendChild(el("span", "label", k + "=" + t.labels[k]));
      labels.appendChild(document.createTextNode(" "));
    });
    tr.appendChild(labels);
    var st = el("td");
    st.appendChild(el("span", "state st-" + cls, stateWord(t)));
    tr.appendChild(st);
    var f = el("td", "for", duration(now - t.since));
    f.title = "since " + utc(t.since);
    tr.appendChild(f);
    var fail = el("td", "failure");
    if (t.failure) {
      fail.appendChild(el("span", "reason", t.failure.reason));
      var words = (t.failure.errno ? " (" + t.failure.errno + ")" : "") +
          (t.failure.kind === "disconnect" ? " disconnect" : " connect failure") + ", ";
      fail.appendChild(document.createTextNode(words));
      var ago = el("span", null, duration(now - t.failure.time) + " ago");
      ago.title = utc(t.failure.time);
      fail.appendChild(ago);
    } else {
      fail.textContent = "none";
    }
    if (t.idle_cutoff_seconds) {
      var cut = el("div", "cutoff", "idle cut-off at most " + t.idle_cutoff_seconds.toFixed(1) + "s");
      cut.title = CUTOFF_TITLE;
      fail.appendChild(cut);
    }
    if (t.canary && (!t.canary.up || !t.up)) {
      var canaryWords = "new connections work";
      if (!t.canary.up) {
        canaryWords = "new connections fail: " + t.canary.reason +
            (t.canary.errno ? " (" + t.canary.errno + ")" : "") +
            " for " + duration(now - t.canary.since);
      }
      var can = el("div", t.canary.up ? "canary" : "canary canary-down", canaryWords);
      can.title = CANARY_TITLE;
      fail.appendChild(can);
    }
    tr.appendChild(fail);
    tr.appendChild(el("td", "num", percent(t.availability_1h)));
    var day = el("td", "num", percent(t.availability_1d));
    day.title = "over " + duration(t.observed_1d_seconds) + " watched";
    tr.appendChild(day);
    tr.appendChild(el("td", "num", String(t.disconnects_1h)));
    var s = el("td");
    s.appendChild(strip(t.strip));
    tr.appendChild(s);
    return tr;
  }

  function summary(d) {
    var text = d.up + " of " + d.total + " up";
    if (d.up < d.total) {
      var parts = [];
      ["backoff", "resolving", "connecting"].forEach(function (s) {
        if (d.by_state[s]) parts.push(s + " " + d.by_state[s]);
      });
      text += ", " + (d.total - d.up) + " down (" + parts.join(", ") + ")";
    }
    var p = $("summary");
    p.textContent = text;
    p.className = "summary " + (d.up < d.total ? "bad" : "good");
    document.title = "connwatch: " + text;
  }

  function pager(d) {
    var nav = $("pager");
    while (nav.firstChild) nav.removeChild(nav.firstChild);
    var first = d.targets.length ? d.offset + 1 : 0;
    $("matched").textContent = d.matched + " match; showing " + first + "\u2013" +
        (d.offset + d.targets.length);
    function link(to, text) {
      var a = el("a", null, text);
      a.href = "#";
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        offset = to;
        refresh(true);
      });
      nav.appendChild(a);
      nav.appendChild(document.createTextNode(" "));
    }
    if (d.offset > 0) link(Math.max(0, d.offset - d.limit), "previous");
    if (d.offset + d.targets.length < d.matched) link(d.offset + d.limit, "next");
  }

  function events(list) {
    var ol = $("events");
    var fresh = document.createDocumentFragment();
    list.forEach(function (e) {
      var li = el("li", "ev ev-" + e.kind);
      li.appendChild(el("time", null, e.time.replace("T", " ").replace(/\.\d+Z$/, " UTC")));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "ev-kind", e.kind));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("b", null, e.target));
      var rest = (e.reason ? " " + e.reason : "") + (e.errno ? " (" + e.errno + ")" : "") +
          (e.detail ? " \u2014 " + e.detail : "");
      li.appendChild(document.createTextNode(rest));
      fresh.appendChild(li);
    });
    while (ol.firstChild) ol.removeChild(ol.firstChild);
    ol.appendChild(fresh);
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function refresh(now) {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    var began = window.performance.now();
    var p = query(false);
    if (now) window.history.replaceState(null, "", p ? "?" + p : "./");
    Promise.all([getJson("api/v1/targets?" + query(true)),
                 getJson("api/v1/events?limit=" + EVENTS)]).then(function (res) {
      var d = res[0].data;
      summary(d);
      var body = document.createElement("tbody");
      body.id = "rows";
      d.targets.forEach(function (t) { body.appendChild(row(t, d.now)); });
      var old = $("rows");
      old.parentNode.replaceChild(body, old);
      pager(d);
      events(res[1].data.events);
      refreshes++;
      document.body.setAttribute("data-refreshes", String(refreshes));
      // fetch to rendered, for bench/status_page.py
      document.body.setAttribute("data-refresh-ms", (window.performance.now() - began).toFixed(1));
      live.className = "live";
      live.textContent = "live, updated " + utc(d.now);
    }).catch(function (err) {
      live.className = "live stale";
      live.textContent = "not updating: " + err.message + " (retrying)";
    }).then(function () {
      inFlight = false;
      timer = setTimeout(function () { refresh(false); }, REFRESH_MS);
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    offset = 0;
    refresh(true);
  });
  q.addEventListener("input", function () {
    clearTimeout(debounce);
    debounce = setTimeout(function () { offset = 0; refresh(true); }, 250);
  });
  state.addEventListener("change", function () { offset = 0; refresh(true); });
  sort.addEventListener("change", function () { offset = 0; refresh(true); });
  timer = setTimeout(function () { refresh(false); }, REFRESH_MS);
}());
