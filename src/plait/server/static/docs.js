// The API docs page: /openapi.json drawn as a list of operations. Text only (textContent).
"use strict";
(function () {
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function schemaText(s) {
    if (!s) return "";
    if (s.$ref) return s.$ref.split("/").pop();
    if (s.anyOf) return s.anyOf.map(schemaText).join(" | ");
    if (s.type === "array") return schemaText(s.items) + "[]";
    return s.type || "";
  }
  fetch("/openapi.json").then((r) => r.json()).then((spec) => {
    const main = document.getElementById("docs");
    main.replaceChildren();
    main.append(el("h1", "", spec.info.title + " " + spec.info.version));
    main.append(el("p", "", spec.info.description || ""));
    main.append(el("p", "muted", "Mutating calls need the server's token in the X-Plait-Token header (or Authorization: Bearer). Errors are JSON: {\"error\": {\"type\", \"message\"}} — 404 unknown, 409 wrong state, 422 bad input."));
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const box = el("section", "op");
        const head = el("h3");
        head.append(el("span", "method m-" + method, method.toUpperCase()), el("code", "", " " + path));
        box.append(head, el("p", "", op.summary || ""));
        const params = (op.parameters || []).map((p) => p.name + " (" + p.in + (p.required ? ", required" : "") + "): " + schemaText(p.schema));
        if (params.length) {
          const ul = el("ul");
          for (const p of params) ul.append(el("li", "", p));
          box.append(ul);
        }
        const body = op.requestBody && op.requestBody.content["application/json"];
        if (body) box.append(el("p", "muted", "body: " + schemaText(body.schema)));
        main.append(box);
      }
    }
    const schemas = (spec.components && spec.components.schemas) || {};
    main.append(el("h2", "", "Bodies"));
    for (const [name, s] of Object.entries(schemas)) {
      if (!s.properties) continue;
      const box = el("section", "op");
      box.append(el("h3", "", name));
      const ul = el("ul");
      for (const [field, fs] of Object.entries(s.properties)) {
        ul.append(el("li", "", field + ": " + schemaText(fs) + ((s.required || []).includes(field) ? " (required)" : "")));
      }
      box.append(ul);
      main.append(box);
    }
  });
})();
