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
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.type === "object" && s.additionalProperties) return "{" + (schemaText(s.propertyNames) || "string") + ": " + schemaText(s.additionalProperties) + "}";
    return s.type || "";
  }
  fetch("/openapi.json").then((r) => r.json()).then((spec) => {
    const main = document.getElementById("docs");
    main.replaceChildren();
    main.append(el("h1", "", spec.info.title + " " + spec.info.version));
    main.append(el("p", "", spec.info.description || ""));
    main.append(el("p", "muted", "Mutating calls need the server's token in the X-Plait-Token header (or Authorization: Bearer). Errors are JSON: {\"error\": {\"type\", \"message\"}} — 400 malformed JSON, 401 no token, 403 wrong token, 404 unknown, 409 wrong state, 422 bad input, 503 store unavailable."));
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
        const answers = [];
        const errors = [];
        for (const [status, r] of Object.entries(op.responses || {})) {
          if (!status.startsWith("2")) { errors.push(status); continue; }
          for (const [media, c] of Object.entries(r.content || {})) {
            const shown = schemaText(c.schema) || (c.schema && c.schema.title) || "";
            answers.push(status + " " + (media === "application/json" ? shown : media + (shown ? " " + shown : "")));
          }
        }
        if (answers.length) box.append(el("p", "muted", "answers: " + answers.join(", ")));
        if (errors.length) box.append(el("p", "muted", "errors (Error): " + errors.join(", ")));
        main.append(box);
      }
    }
    const schemas = (spec.components && spec.components.schemas) || {};
    main.append(el("h2", "", "Schemas: what the calls take and answer"));
    for (const [name, s] of Object.entries(schemas)) {
      if (s.enum) {
        const box = el("section", "op");
        box.append(el("h3", "", name), el("p", "", "one of: " + s.enum.join(", ")));
        main.append(box);
        continue;
      }
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
